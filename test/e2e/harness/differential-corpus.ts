import { DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, type TestContent } from "./registry-push.js";

/**
 * How a request shape authenticates: the registry's own default (its test user's Bearer token on
 * a token registry, nothing on an open one), or one of the variants every registry is asked with.
 */
export type ShapeAuth = "default" | "anonymous" | "bearer" | "bearer-garbage" | "basic" | "basic-wrong";

/** One request, sent the same way to the registry directly and through regcache. */
export interface Shape {
  /** Unique within a corpus and readable: what a failure names. */
  id: string;
  method: string;
  path: string;
  headers: [string, string][];
  auth: ShapeAuth;
  body?: Buffer;
}

/** The repositories the corpus reads: all hold `content`, except `other` (a different image) and `absent` (nothing). */
export interface CorpusRepositories {
  /** Private on a token registry. */
  main: string;
  /** Pulled anonymously on a token registry. */
  open: string;
  /** Holds its own image, none of main's digests. */
  other: string;
  absent: string;
}

const DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";

/** Accept sets: none, a wildcard, single manifest types, what containerd sends, a non-manifest type, parameters. */
const ACCEPTS: [string, string | undefined][] = [
  ["no-accept", undefined],
  ["any", "*/*"],
  ["oci", OCI_MANIFEST],
  ["docker", DOCKER_MANIFEST],
  ["containerd", `${DOCKER_MANIFEST}, ${DOCKER_LIST}, ${OCI_MANIFEST}, ${OCI_INDEX}, */*`],
  ["text", "text/plain"],
  ["q-params", `${OCI_MANIFEST};q=0.5, ${DOCKER_MANIFEST};q=0.9, ${OCI_INDEX}`],
];
const ALL_TYPES = `${DOCKER_MANIFEST}, ${DOCKER_LIST}, ${OCI_MANIFEST}, ${OCI_INDEX}`;

/** Range and conditional headers for content by digest (RFC 9110 sections 13 and 14). */
function contentConditions(digest: string): [string, [string, string][]][] {
  return [
    ["plain", []],
    ["range-head", [["Range", "bytes=0-9"]]],
    ["range-open", [["Range", "bytes=10-"]]],
    ["range-suffix", [["Range", "bytes=-5"]]],
    ["range-beyond", [["Range", "bytes=999999-"]]],
    ["range-reversed", [["Range", "bytes=5-2"]]],
    ["range-multi", [["Range", "bytes=0-4,10-14"]]],
    ["range-unit", [["Range", "items=0-5"]]],
    ["if-range-match", [["Range", "bytes=0-9"], ["If-Range", `"${digest}"`]]],
    ["if-range-other", [["Range", "bytes=0-9"], ["If-Range", '"sha256:other"']]],
    ["if-range-weak", [["Range", "bytes=0-9"], ["If-Range", `W/"${digest}"`]]],
    ["if-none-match", [["If-None-Match", `"${digest}"`]]],
    ["if-none-match-other", [["If-None-Match", '"sha256:other"']]],
    ["if-match-other", [["If-Match", '"sha256:other"']]],
  ];
}

const hex = (c: string, n: number): string => c.repeat(n);

/**
 * The request shapes one registry is asked (the same list for every registry): methods ×
 * blobs, manifests, tags, referrers, catalog, tag lists and uploads × valid, invalid and edge
 * names, references and digests × Accept sets × Range, If-Range and If-None-Match × anonymous,
 * Basic, Bearer and wrong credentials. Cold and warm come from sending the corpus twice.
 */
export function buildCorpus(content: TestContent, repos: CorpusRepositories): Shape[] {
  const shapes: Shape[] = [];
  const add = (id: string, method: string, path: string, headers: [string, string][] = [], auth: ShapeAuth = "default", body?: Buffer): void => {
    shapes.push({ id: `${method} ${id}`, method, path, headers, auth, body });
  };
  const { main, open, other, absent } = repos;
  const blob = (repo: string, digest: string) => `/v2/${repo}/blobs/${digest}`;
  const manifest = (repo: string, reference: string) => `/v2/${repo}/manifests/${reference}`;

  // Content by digest that exists somewhere: every method × every Range and condition (the
  // config and the open repository's layer, which take the same paths, × a few).
  const blobs: [string, string, string, string[] | undefined][] = [
    ["blob:layer", main, content.layer.digest, undefined],
    ["blob:manifest-digest", main, content.oci.digest, undefined],
    ["blob:other-repository", other, content.layer.digest, undefined],
    ["blob:config", main, content.config.digest, ["plain", "range-head", "if-none-match"]],
    ["blob:open-repository", open, content.layer.digest, ["plain", "range-open", "if-range-other"]],
  ];
  for (const [id, repo, digest, only] of blobs) {
    for (const method of ["GET", "HEAD"]) {
      for (const [condition, headers] of contentConditions(digest)) if (!only || only.includes(condition)) add(`${id} ${condition}`, method, blob(repo, digest), headers);
    }
  }
  const oddDigests: [string, string, string][] = [
    ["blob:unknown", main, `sha256:${hex("e", 64)}`],
    ["blob:sha512-unknown", main, `sha512:${hex("e", 128)}`],
    ["blob:sha384", main, `sha384:${hex("e", 96)}`],
    ["blob:uppercase-hex", main, content.layer.digest.toUpperCase().replace("SHA256", "sha256")],
    ["blob:short-hex", main, "sha256:abc"],
    ["blob:empty-hex", main, "sha256:"],
    ["blob:md5", main, `md5:${hex("e", 32)}`],
    ["blob:not-a-digest", main, "latest"],
    ["blob:absent-repository", absent, content.layer.digest],
  ];
  for (const [id, repo, digest] of oddDigests) for (const method of ["GET", "HEAD"]) add(id, method, blob(repo, digest));

  // Manifests by digest and by tag: every Accept set.
  const manifests: [string, string, string][] = [
    ["manifest:oci", main, content.oci.digest],
    ["manifest:docker", main, content.docker.digest],
    ["manifest:index", main, content.index.digest],
    ["manifest:undeclared", main, content.undeclared.digest],
    ["manifest:open-repository", open, content.undeclared.digest],
    ["manifest:other-repository", other, content.oci.digest],
    ["tag:oci", main, "oci"],
    ["tag:docker", main, "docker"],
    ["tag:index", main, "index"],
    ["tag:undeclared", main, "undeclared"],
  ];
  for (const [id, repo, reference] of manifests) {
    for (const method of ["GET", "HEAD"]) {
      for (const [acceptId, accept] of ACCEPTS) add(`${id} accept=${acceptId}`, method, manifest(repo, reference), accept ? [["Accept", accept]] : []);
    }
  }
  for (const [id, digest] of [["manifest:oci", content.oci.digest], ["manifest:undeclared", content.undeclared.digest]] as const) {
    for (const [condition, headers] of contentConditions(digest).filter(([c]) => ["range-head", "range-multi", "range-beyond", "if-range-other", "if-none-match"].includes(c))) {
      add(`${id} ${condition}`, "GET", manifest(main, digest), [["Accept", ALL_TYPES], ...headers]);
    }
    add(`${id} if-none-match-unquoted`, "GET", manifest(main, digest), [["Accept", ALL_TYPES], ["If-None-Match", digest]]);
    add(`${id} if-none-match-any`, "GET", manifest(main, digest), [["Accept", ALL_TYPES], ["If-None-Match", "*"]]);
  }
  const oddReferences: [string, string][] = [
    ["manifest:unknown", `sha256:${hex("d", 64)}`],
    ["manifest:sha384", `sha384:${hex("d", 96)}`],
    ["manifest:short-hex", "sha256:abc"],
    ["tag:unknown", "nope"],
    ["tag:invalid-dot", ".INVALID_MANIFEST_NAME"],
    ["tag:invalid-dash", "-dash"],
    ["tag:underscore", "_under"],
    ["tag:longest", hex("t", 128)],
    ["tag:too-long", hex("t", 129)],
    ["tag:uppercase", "UPPER"],
  ];
  for (const [id, reference] of oddReferences) for (const method of ["GET", "HEAD"]) add(id, method, manifest(main, reference), [["Accept", ALL_TYPES]]);

  // Everything regcache passes through, and what it refuses as unsafe to forward.
  add("ping", "GET", "/v2/");
  add("ping-no-slash", "GET", "/v2");
  add("ping", "HEAD", "/v2/");
  add("catalog", "GET", "/v2/_catalog");
  add("catalog n=1", "GET", "/v2/_catalog?n=1");
  add("tags-list", "GET", `/v2/${main}/tags/list`);
  add("tags-list n=1", "GET", `/v2/${main}/tags/list?n=1`);
  add("tags-list n=1 last=docker", "GET", `/v2/${main}/tags/list?n=1&last=docker`);
  add("tags-list absent-repository", "GET", `/v2/${absent}/tags/list`);
  add("referrers", "GET", `/v2/${main}/referrers/${content.oci.digest}`);
  add("referrers artifactType", "GET", `/v2/${main}/referrers/${content.oci.digest}?artifactType=application%2Fexample`);
  add("blob:layer with query", "GET", `${blob(main, content.layer.digest)}?ns=example.test`);
  add("tag:oci with query", "GET", `${manifest(main, "oci")}?ns=example.test`, [["Accept", ALL_TYPES]]);
  add("blob:layer with body", "GET", blob(main, content.layer.digest), [], "default", Buffer.from("x"));
  add("name:uppercase", "GET", blob(main.replace(/^./, (c) => c.toUpperCase()), content.layer.digest));
  add("name:contains-blobs", "GET", manifest(`${main}/blobs`, "oci"), [["Accept", ALL_TYPES]]);
  add("name:double-slash", "GET", blob(main.replace("/", "//"), content.layer.digest));
  add("unsafe:name-over-255", "GET", manifest(hex("n", 300), "oci"));
  add("unsafe:dot-segment", "GET", `/v2/${main}/../${main}/manifests/oci`);
  add("unsafe:encoded-slash", "GET", manifest(main.replace("/", "%2F"), "oci"));
  add("unsafe:encoded-dot", "GET", blob(main, "sha256:%2e%2e"));
  add("unsafe:encoded-nul", "GET", `${blob(main, content.layer.digest)}%00`);
  add("unsafe:encoded-newline", "GET", manifest(main, "oci%0a"));
  add("upload:start", "POST", `/v2/${main}/blobs/uploads/`, [["Content-Length", "0"]]);
  add("upload:unknown-session", "GET", `/v2/${main}/blobs/uploads/${"0".repeat(8)}-0000-4000-8000-${"0".repeat(12)}`);
  add("upload:unknown-session", "PATCH", `/v2/${main}/blobs/uploads/${"0".repeat(8)}-0000-4000-8000-${"0".repeat(12)}`, [["Content-Type", "application/octet-stream"]], "default", Buffer.from("abc"));
  add("upload:mount-from-absent", "POST", `/v2/${main}/blobs/uploads/?mount=${content.layer.digest}&from=${absent}`, [["Content-Length", "0"]]);
  add("blob:unknown", "DELETE", blob(main, `sha256:${hex("e", 64)}`));
  add("manifest:invalid-body", "PUT", manifest(main, "broken"), [["Content-Type", OCI_MANIFEST]], "default", Buffer.from("{not json"));
  add("ping", "OPTIONS", "/v2/");

  // Credentials: each variant on the requests clients make.
  const authTargets: [string, string, string, [string, string][]][] = [
    ["blob:layer", "GET", blob(main, content.layer.digest), []],
    ["blob:layer", "HEAD", blob(main, content.layer.digest), []],
    ["manifest:oci", "GET", manifest(main, content.oci.digest), [["Accept", ALL_TYPES]]],
    ["tag:oci", "GET", manifest(main, "oci"), [["Accept", ALL_TYPES]]],
    ["tag:oci", "HEAD", manifest(main, "oci"), [["Accept", ALL_TYPES]]],
    ["blob:open-repository", "GET", blob(open, content.layer.digest), []],
    ["tag:open-undeclared", "GET", manifest(open, "undeclared"), [["Accept", ALL_TYPES]]],
  ];
  for (const [id, method, path, headers] of authTargets) {
    for (const auth of ["anonymous", "bearer", "bearer-garbage", "basic", "basic-wrong"] as const) add(`${id} auth=${auth}`, method, path, headers, auth);
  }
  return shapes;
}
