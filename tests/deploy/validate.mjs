// Validates Kubernetes objects offline against the schema of their kind
// (npm kubernetes-models 5.x, and @kubernetes-models/prometheus-operator
// for ServiceMonitor and PrometheusRule), and reports fields the schema does
// not know, which kubernetes-models accepts silently: the compiled
// validators read every property they know, so a property that validation
// never read is unknown to the schema.
//   usage: node validate.mjs OBJECTS.json   (a JSON list of objects)
// Prints one line per problem and exits 1 if there is any.
import { readFileSync } from "node:fs";

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/")
    ? apiVersion.split("/")
    : ["", apiVersion];
  const candidates = [];
  if (group.endsWith("coreos.com")) {
    candidates.push(`@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`);
  } else {
    candidates.push(`kubernetes-models/${group ? group + "/" : ""}${version}/${kind}`);
  }
  for (const c of candidates) {
    try {
      const mod = await import(c);
      if (mod[kind]) return mod[kind];
    } catch (e) {
      if (e.code !== "ERR_MODULE_NOT_FOUND" && e.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e;
    }
  }
  return null;
}

// A deep proxy of `data` that records every property path read.
function tracked(data, path, seen) {
  if (data === null || typeof data !== "object") return data;
  return new Proxy(data, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof prop !== "string") return value;
      const p = Array.isArray(target) ? `${path}[${prop}]` : `${path}.${prop}`;
      if (Object.prototype.hasOwnProperty.call(target, prop)) seen.add(p);
      return tracked(value, p, seen);
    },
  });
}

function allPaths(data, path, out) {
  if (data === null || typeof data !== "object") return out;
  for (const [k, v] of Object.entries(data)) {
    const p = Array.isArray(data) ? `${path}[${k}]` : `${path}.${k}`;
    out.push(p);
    allPaths(v, p, out);
  }
  return out;
}

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let problems = 0;
for (const obj of objects) {
  const before = problems;
  const name = `${obj.kind}/${obj.metadata?.namespace ? obj.metadata.namespace + "/" : ""}${obj.metadata?.name}`;
  const Model = await modelFor(obj.apiVersion ?? "", obj.kind ?? "");
  if (!Model) {
    console.log(`${name}: no schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
    problems++;
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    console.log(`${name}: ${e.message}`);
    problems++;
  }
  const seen = new Set();
  try {
    Model.prototype.validate.call(tracked(structuredClone(obj), "", seen));
  } catch {
    // reported above
  }
  // Objects below a path that validation did not read at all are reported
  // once, at the top.
  // RawExtension content (resource.k8s.io's opaque device configuration
  // parameters) is free-form: the driver validates it, not the schema.
  const freeForm = (p) => /\.opaque\.parameters[.[]/.test(p);
  const unknown = allPaths(obj, "", []).filter((p) => !seen.has(p) && !freeForm(p));
  const top = unknown.filter(
    (p) => !unknown.some((q) => q !== p && (p.startsWith(q + ".") || p.startsWith(q + "["))),
  );
  for (const p of top) {
    console.log(`${name}: unknown field ${p.slice(1)}`);
    problems++;
  }
  if (problems === before) console.log(`${name}: valid`);
}
process.exit(problems ? 1 : 0);
