/* Service worker of the Collaboration Bus GUI (scope /ui/). It caches the app shell only:
 *  - pages (navigations under /ui/): network first, the cached shell when offline;
 *  - /ui/assets/* (names carry a content hash): cache first; those of the current index.html are cached at
 *    install and after each page load, and those it no longer refers to (an older build's) are dropped;
 *  - other /ui/ files (manifest, icons): network first, cached copy when offline.
 * Everything else — /api, /ws, /readyz, /healthz, other origins — is left alone: never cached, never answered
 * from cache. Keys are never stored here (requests with an Authorization header are not touched).
 */
const CACHE = "collab-bus-ui-v1";
const SCOPE = new URL(self.registration.scope).pathname; // "/ui/"
const SHELL = [SCOPE, `${SCOPE}manifest.webmanifest`, `${SCOPE}icon.svg`];

/** The /ui/assets/ files an index.html refers to. */
function assetsOf(html) {
  const found = new Set();
  for (const match of html.matchAll(/(?:src|href)="([^"]*\/assets\/[^"]+)"/g)) {
    found.add(new URL(match[1], self.location.origin).href);
  }
  return found;
}

/** Cache the assets of this index.html and drop cached assets no page refers to any more (an older build's). */
async function syncAssets(cache, html) {
  const wanted = assetsOf(html);
  await Promise.all(
    [...wanted].map(async (url) => {
      if (!(await cache.match(url))) await cache.add(url);
    }),
  );
  for (const request of await cache.keys()) {
    if (new URL(request.url).pathname.startsWith(`${SCOPE}assets/`) && !wanted.has(request.url)) {
      await cache.delete(request);
    }
  }
}

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(SHELL);
      const index = await cache.match(SCOPE);
      if (index) await syncAssets(cache, await index.text());
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("collab-bus-ui-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isShellRequest(request) {
  if (request.method !== "GET") return false;
  if (request.headers.has("Authorization")) return false;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return false;
  return url.pathname.startsWith(SCOPE) && url.pathname !== `${SCOPE}sw.js`;
}

async function networkFirst(request, fallbackUrl, isPage = false) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) {
      await cache.put(fallbackUrl ?? request, response.clone());
      if (isPage) {
        const html = await response.clone().text();
        syncAssets(cache, html).catch(() => {}); // in the background: the page need not wait
      }
    }
    return response;
  } catch (error) {
    const cached = await cache.match(fallbackUrl ?? request);
    if (cached) return cached;
    throw error;
  }
}

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (!isShellRequest(request)) return; // the browser handles it as if there were no service worker
  const path = new URL(request.url).pathname;
  if (request.mode === "navigate") {
    // Every page of the app is the same index.html (client-side routes): keep one copy, under the scope URL.
    event.respondWith(networkFirst(request, SCOPE, true));
  } else if (path.startsWith(`${SCOPE}assets/`)) {
    event.respondWith(cacheFirst(request));
  } else {
    event.respondWith(networkFirst(request));
  }
});
