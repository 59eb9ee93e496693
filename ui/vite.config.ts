// Builds the UI into dist/, which the server embeds at compile time. The
// output must be byte-for-byte reproducible: tests/codegen-check.sh rebuilds
// it and fails when it differs from the committed copy.
import { defineConfig } from "vite";

export default defineConfig({
  // Preact's JSX runtime through esbuild: no Babel plugin needed.
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    reportCompressedSize: false,
    // One script and one stylesheet with content hashes; nothing inlined
    // from outside the bundle.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  resolve: {
    alias: {
      react: "preact/compat",
      "react-dom": "preact/compat",
    },
  },
});
