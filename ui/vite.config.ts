// Builds the UI into dist/, which the server embeds at compile time. The
// output must be byte-for-byte reproducible: tests/codegen-check.sh rebuilds
// it and fails when it differs from the committed copy.
import { defineConfig } from "vite";

// `npm run dev`: the API calls go to a running server's UI listener.
const api = process.env.TASKLOOM_UI_API ?? "http://127.0.0.1:8233";

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
    // One script and one stylesheet with content hashes; nothing inlined.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  server: {
    host: "127.0.0.1",
    port: 5173,
    proxy: {
      "/taskloom.v1.": {
        target: api,
        changeOrigin: true,
        // The server refuses other origins: present the call as its own.
        configure: (proxy) => proxy.on("proxyReq", (request) => request.setHeader("origin", api)),
      },
    },
  },
});
