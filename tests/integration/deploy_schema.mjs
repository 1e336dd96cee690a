// Offline schema check of rendered Kubernetes manifests (TAP): every object
// of every YAML file given is validated against the Kubernetes OpenAPI
// schema of its apiVersion and kind, as kubernetes-models compiles it (and
// the prometheus-operator CRDs for ServiceMonitor). Nothing is fetched: the
// schemas ship inside the npm packages.
// Copied beside the node_modules that hold kubernetes-models,
// @kubernetes-models/prometheus-operator and yaml (deploy_schema.sh), so
// that bare imports resolve there:
//   node deploy_schema.mjs FILE.yaml...
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";

const files = process.argv.slice(2);

// apiVersion -> the module that has its kinds
function moduleOf(apiVersion) {
  if (apiVersion === "monitoring.coreos.com/v1") {
    return "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
  }
  return "kubernetes-models/" + apiVersion;   // "v1", "apps/v1", ...
}

let n = 0;
let failed = 0;
for (const file of files) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
  const problems = [];
  let count = 0;
  for (const d of docs) {
    const obj = d.toJS();
    if (obj === null) continue;
    count++;
    const what = `${obj.kind} ${obj.metadata?.name}`;
    let mod;
    try {
      mod = await import(moduleOf(obj.apiVersion));
    } catch (e) {
      problems.push(`${what}: no schema for apiVersion ${obj.apiVersion}`);
      continue;
    }
    const Kind = mod[obj.kind];
    if (typeof Kind !== "function") {
      problems.push(`${what}: ${obj.apiVersion} has no kind ${obj.kind}`);
      continue;
    }
    try {
      new Kind(obj).validate();
    } catch (e) {
      const errs = e.errors ?? [{ instancePath: "", message: e.message }];
      for (const x of errs) {
        problems.push(`${what}: ${x.instancePath || "/"} ${x.message}` +
                      (x.params ? " " + JSON.stringify(x.params) : ""));
      }
    }
  }
  n++;
  const name = path.basename(file);
  if (problems.length) {
    failed++;
    console.log(`not ok ${n} - ${name}: ${count} objects against the Kubernetes schemas`);
    for (const p of problems) console.log("# " + p);
  } else {
    console.log(`ok ${n} - ${name}: ${count} objects against the Kubernetes schemas`);
  }
}
console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
