import { fileURLToPath } from "node:url";
import tailwindcss from "@tailwindcss/vite";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The bus serves the production bundle at /ui (app/ui.py). `npm run dev` proxies the bus's API to
// BUS_URL (default http://127.0.0.1:8000) so the page and the API share an origin, as in production.
const busUrl = process.env.BUS_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  base: "/ui/",
  plugins: [react(), tailwindcss()],
  resolve: {
    alias: { "@": fileURLToPath(new URL("./src", import.meta.url)) },
  },
  build: {
    outDir: "../app/ui_dist",
    emptyOutDir: true,
    sourcemap: false,
    // Deterministic output: content hashes only, no timestamps or absolute paths.
    assetsDir: "assets",
    // One chunk on purpose: the service worker caches the assets index.html names, so every page works offline.
    chunkSizeWarningLimit: 700,
  },
  server: {
    proxy: {
      "/api": busUrl,
      "/readyz": busUrl,
      "/healthz": busUrl,
      "/ws": { target: busUrl.replace(/^http/, "ws"), ws: true },
    },
  },
  test: {
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
    environment: "node",
  },
});
