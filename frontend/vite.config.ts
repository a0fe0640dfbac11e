/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the signaling socket to a running mcp-tornado
// (default http://127.0.0.1:8000; override with MCP_TORNADO_URL).
const backend = process.env.MCP_TORNADO_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  // Relative asset URLs so the page also works when served under a sub-path.
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
  },
  server: {
    proxy: {
      "/ws": { target: backend, ws: true },
      "/healthz": { target: backend },
    },
  },
  test: {
    environment: "node",
    include: ["test/**/*.test.ts", "test/**/*.test.tsx"],
  },
});
