// Validates the chart's Prometheus Operator resources (ServiceMonitor, PrometheusRule), which
// kubernetes-validate has no schema for. Two checks per resource:
//  - the schema of @kubernetes-models/prometheus-operator (types, enums, patterns, required
//    fields), generated from the operator's CRDs;
//  - strict fields: every key must be a field of its type, read from the package's type
//    declarations (the schema alone lets unknown keys through, as the API server would after
//    pruning them silently).
// Usage: node validate-crs.mjs FILE.json (a JSON array of resources), from a directory whose
// node_modules holds package-lock.json's packages. Exit 1 on any problem.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

// Packages are read from the node_modules beside this file (plain paths: Node 18 has no
// import.meta.resolve), where their type declarations mirror their module paths.
const nodeModules = path.join(path.dirname(fileURLToPath(import.meta.url)), "node_modules");
const models = { ServiceMonitor, PrometheusRule };

// Interface name → { file, props: {name: type}, extends: [names] }, parsed lazily from .d.ts.
const interfaces = new Map();
const parsedFiles = new Set();

function parseDts(file) {
  if (parsedFiles.has(file)) return;
  parsedFiles.add(file);
  const text = fs.readFileSync(file, "utf8");
  const imports = new Map();
  for (const m of text.matchAll(/import \{([^}]+)\} from "([^"]+)";/g)) {
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
      imports.set(name, resolveModule(file, m[2]));
    }
  }
  for (const m of text.matchAll(/export interface (\w+)(?: extends ([^{]+))? \{\n([\s\S]*?)\n\}/g)) {
    const props = {};
    for (const p of m[3].matchAll(/^ {4}"([^"]+)"\??: ([^\n]+?);?$/gm)) props[p[1]] = p[2];
    const ext = (m[2] || "").split(",").map((s) => s.trim()).filter((s) => /^I\w+$/.test(s));
    interfaces.set(m[1], { file, props, ext, imports });
  }
  // Interfaces are declared by a short name and exported under their long one.
  for (const m of text.matchAll(/export type \{([^}]+)\}/g)) {
    for (const pair of m[1].split(",")) {
      const [name, alias] = pair.trim().split(/\s+as\s+/);
      if (alias && interfaces.has(name)) interfaces.set(alias, interfaces.get(name));
    }
  }
}

function resolveModule(from, spec) {
  const base = spec.startsWith(".")
    ? path.resolve(path.dirname(from), spec)
    : path.join(nodeModules, spec.replace(/\.js$/, ""));
  return base.replace(/\.js$/, "") + ".d.ts";
}

function lookup(name, from) {
  if (!interfaces.has(name) && from) {
    const file = from.imports.get(name);
    if (file && fs.existsSync(file)) parseDts(file);
  }
  return interfaces.get(name);
}

function fieldsOf(iface) {
  const all = { ...iface.props };
  for (const e of iface.ext) {
    const parent = lookup(e, iface);
    if (parent) Object.assign(all, fieldsOf(parent));
  }
  return all;
}

function checkStrict(value, type, owner, at, problems) {
  if (value === null || typeof value !== "object") return;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => checkStrict(v, arr[1], owner, `${at}[${i}]`, problems));
    return;
  }
  if (!/^I\w+$/.test(type)) return; // maps, unions, inline objects: free-form keys
  const iface = lookup(type, owner);
  if (!iface) return;
  const fields = fieldsOf(iface);
  if (Object.keys(fields).length === 0) return;
  for (const [k, v] of Object.entries(value)) {
    if (!(k in fields)) problems.push(`${at}: unknown field "${k}"`);
    else checkStrict(v, fields[k], iface, `${at}.${k}`, problems);
  }
}

const docs = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
let failed = false;
for (const doc of docs) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  const Model = models[doc.kind];
  if (!Model) {
    console.error(`ERROR ${name}: no schema for kind ${doc.kind}`);
    failed = true;
    continue;
  }
  const problems = [];
  try {
    new Model(doc).validate();
  } catch (e) {
    problems.push(e.message);
  }
  const top = path.join(nodeModules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1", `${doc.kind}.d.ts`);
  parseDts(top);
  checkStrict(doc, `I${doc.kind}`, interfaces.get(`I${doc.kind}`), doc.kind, problems);
  if (problems.length) {
    failed = true;
    for (const p of problems) console.error(`ERROR ${name}: ${p}`);
  } else {
    console.log(`ok ${name}`);
  }
}
process.exit(failed ? 1 : 0);
