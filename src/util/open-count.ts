/**
 * Counts what is open right now (client streams, object-store reads), so that each can be sized,
 * as it opens, by how many others are open: `planFor` is given that number.
 */
export class OpenCount<Plan> {
  private count = 0;

  constructor(private readonly planFor: (openBefore: number) => Plan) {}

  /** The plan for one opening now; `closed` must be called when it ends (again is harmless). */
  open(): { plan: Plan; closed: () => void } {
    const plan = this.planFor(this.count);
    this.count += 1;
    let done = false;
    return {
      plan,
      closed: () => {
        if (done) return;
        done = true;
        this.count -= 1;
      },
    };
  }
}
