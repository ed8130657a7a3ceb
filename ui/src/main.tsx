import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import "./index.css";

// /ui and /ui/ are the same page; only /ui/ is inside the router's basename and the service worker's scope.
if (window.location.pathname === "/ui") {
  window.history.replaceState(null, "", `/ui/${window.location.search}${window.location.hash}`);
}

const root = document.getElementById("root");
if (!root) throw new Error("no #root element");
createRoot(root).render(
  <StrictMode>
    <App />
  </StrictMode>,
);

// The service worker caches the app shell (never /api or /ws); production builds only, so `npm run dev`
// is never served stale files.
if (import.meta.env.PROD && "serviceWorker" in navigator) {
  window.addEventListener("load", () => {
    navigator.serviceWorker.register(`${import.meta.env.BASE_URL}sw.js`, { scope: import.meta.env.BASE_URL }).catch(() => {
      // not fatal: the GUI works without it
    });
  });
}
