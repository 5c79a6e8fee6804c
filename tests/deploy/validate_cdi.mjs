// Validates CDI spec files (JSON) against the CDI spec's JSON schema
// (cdi-schema/, vendored from cncf-tags/container-device-interface), with
// ajv 8 (draft-07; strict off: upstream defs.json has a non-keyword "ref").
// The schema allows any extra field and does not check env entries, so this
// also reports, as "cdi:" problems, what the CDI parser or a runtime would
// refuse: fields the schema does not know, an unknown cdiVersion, a kind or
// device name the parser's rules reject, duplicate device names, env
// entries that are not NAME=VALUE, a relative mount containerPath.
//   usage: node validate_cdi.mjs SPEC.json...
// Prints one line per problem (or "FILE: valid") and exits 1 if any.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";

const here = dirname(fileURLToPath(import.meta.url));
const schemaDir = process.env.CDI_SCHEMA_DIR ?? join(here, "cdi-schema");
const schema = JSON.parse(readFileSync(join(schemaDir, "schema.json"), "utf8"));
const defs = JSON.parse(readFileSync(join(schemaDir, "defs.json"), "utf8"));

const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema(defs, "defs.json"); // the id schema.json's $refs use
const validate = ajv.compile(schema);

// The versions the CDI library knows (pkg/cdi/version.go).
const VERSIONS = ["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"];

// The schema node a $ref names ("defs.json#/definitions/X" or, inside
// defs.json, "#/definitions/X").
function resolve(node, doc) {
  while (node && node.$ref) {
    const [file, pointer] = node.$ref.split("#");
    if (file === "defs.json") doc = defs;
    node = pointer.split("/").filter(Boolean).reduce((n, k) => n?.[k], doc);
  }
  return [node, doc];
}

// Properties of `data` that the schema node does not declare.
function unknownFields(data, node, doc, path, out) {
  [node, doc] = resolve(node, doc);
  if (!node || data === null || typeof data !== "object") return out;
  if (Array.isArray(data)) {
    if (node.items) data.forEach((v, i) => unknownFields(v, node.items, doc, `${path}[${i}]`, out));
    return out;
  }
  if (node.patternProperties) return out; // a map
  if (!node.properties) return out;
  for (const [k, v] of Object.entries(data)) {
    const p = path ? `${path}.${k}` : k;
    if (!(k in node.properties)) out.push(`unknown field ${p}`);
    else unknownFields(v, node.properties[k], doc, p, out);
  }
  return out;
}

// pkg/parser: vendor and class names, device names.
const VENDOR = /^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const CLASS = /^[A-Za-z]([A-Za-z0-9_-]*[A-Za-z0-9])?$/;
const DEVICE = /^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$/;

function cdiProblems(spec) {
  const out = unknownFields(spec, schema, schema, "", []);
  if (typeof spec.cdiVersion === "string" && !VERSIONS.includes(spec.cdiVersion)) {
    out.push(`cdiVersion ${spec.cdiVersion} is not a known CDI version (${VERSIONS.join(", ")})`);
  }
  if (typeof spec.kind === "string") {
    const parts = spec.kind.split("/");
    if (parts.length !== 2 || !VENDOR.test(parts[0]) || !CLASS.test(parts[1])) {
      out.push(`kind "${spec.kind}" is not vendor/class`);
    }
  }
  const edits = [];
  if (spec.containerEdits) edits.push(["containerEdits", spec.containerEdits]);
  const names = new Set();
  (Array.isArray(spec.devices) ? spec.devices : []).forEach((d, i) => {
    if (typeof d?.name === "string") {
      if (!DEVICE.test(d.name)) out.push(`devices[${i}].name "${d.name}" is not a valid device name`);
      if (names.has(d.name)) out.push(`devices[${i}].name "${d.name}" is a duplicate`);
      names.add(d.name);
    }
    if (d?.containerEdits) edits.push([`devices[${i}].containerEdits`, d.containerEdits]);
  });
  if (Array.isArray(spec.devices) && spec.devices.length === 0) out.push("devices is empty");
  for (const [p, e] of edits) {
    (Array.isArray(e.env) ? e.env : []).forEach((v, i) => {
      if (typeof v !== "string" || !/^[^=]+=/.test(v)) {
        out.push(`${p}.env[${i}] ${JSON.stringify(v)} is not NAME=VALUE`);
      }
    });
    (Array.isArray(e.mounts) ? e.mounts : []).forEach((m, i) => {
      if (m?.hostPath === "") out.push(`${p}.mounts[${i}].hostPath is empty`);
      if (typeof m?.containerPath === "string" && !m.containerPath.startsWith("/")) {
        out.push(`${p}.mounts[${i}].containerPath "${m.containerPath}" is not absolute`);
      }
    });
  }
  return out;
}

let problems = 0;
const files = process.argv.slice(2);
if (files.length === 0) {
  console.log("usage: node validate_cdi.mjs SPEC.json...");
  process.exit(2);
}
for (const file of files) {
  let spec;
  try {
    spec = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    console.log(`${file}: ${e.message}`);
    problems++;
    continue;
  }
  const before = problems;
  if (!validate(spec)) {
    for (const e of validate.errors) {
      console.log(`${file}: ${e.instancePath || "/"} ${e.message}`);
      problems++;
    }
  }
  if (spec !== null && typeof spec === "object" && !Array.isArray(spec)) {
    for (const p of cdiProblems(spec)) {
      console.log(`${file}: cdi: ${p}`);
      problems++;
    }
  }
  if (problems === before) console.log(`${file}: valid`);
}
process.exit(problems ? 1 : 0);
