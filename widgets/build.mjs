// Bundles every widget entry (a top-level widgets/*.js with `export default`) into one
// self-contained ES module under harmony_lab/widgets/static/, and copies the stylesheets there.
//   node build.mjs                 build once
//   node build.mjs --watch         rebuild on every change (for anywidget's hot reload)
//   node build.mjs --outdir DIR    build into DIR (the up-to-date check compares DIR with static/)
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, watch } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const at = args.indexOf("--outdir");
const outdir = at >= 0 ? resolve(args[at + 1]) : join(here, "..", "harmony_lab", "widgets", "static");
const watching = args.includes("--watch");

const files = readdirSync(here).sort();
const entries = files.filter((f) => f.endsWith(".js") && /^export default /m.test(readFileSync(join(here, f), "utf8")));
const sheets = files.filter((f) => f.endsWith(".css"));
if (!entries.length) throw new Error(`no widget entry points (a *.js with "export default") in ${here}`);

const options = {
  absWorkingDir: here,  // comments name sources relative to widgets/, wherever the checkout is
  entryPoints: entries,
  outdir,
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minifyWhitespace: true,  // identifiers stay readable in stack traces
  minifySyntax: true,
  charset: "utf8",
  legalComments: "inline",
  logLevel: "warning",
  banner: { js: "// Built by widgets/build.mjs from the sources in widgets/ (esbuild): do not edit." },
};

function copySheets() {
  mkdirSync(outdir, { recursive: true });
  for (const f of sheets) copyFileSync(join(here, f), join(outdir, f));
}

if (watching) {
  const ctx = await esbuild.context({ ...options, logLevel: "info" });
  copySheets();
  await ctx.watch();
  watch(here, (_, name) => { if (name && name.endsWith(".css")) copySheets(); });
  console.log(`watching widgets/ -> ${outdir}`);
} else {
  await esbuild.build(options);
  copySheets();
}
