// Bundles the SDK test page: sdk_page/entry.js (+ the unmodified @reactor-team/js-sdk from
// node_modules) → dist/sdk_page.js, and copies sdk_page/index.html beside it.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");
fs.mkdirSync(dist, { recursive: true });

await esbuild.build({
  entryPoints: [path.join(here, "sdk_page", "entry.js")],
  outfile: path.join(dist, "sdk_page.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "chrome110",
  sourcemap: true,
  // The SDK reads process.env.NODE_ENV at call time (sendCommand); a browser has no `process`,
  // so the bundler must replace it, as every app bundler (Next.js, Vite) does.
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
fs.copyFileSync(path.join(here, "sdk_page", "index.html"), path.join(dist, "index.html"));
console.log(`built ${path.relative(process.cwd(), path.join(dist, "sdk_page.js"))}`);
