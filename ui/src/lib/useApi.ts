import { useCallback, useEffect, useRef, useState } from "react";
import { isAbort } from "@/api/errors";

export interface ApiState<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  /** When data was last fetched successfully (ms since the epoch). */
  updatedAt: number | null;
  reload: () => void;
}

/**
 * Fetch with `fetcher` now, on `reload()`, and every `refreshMs` if given. The last good data is kept when a
 * later fetch fails (the error is reported beside it). Overlapping fetches: the older one is aborted.
 */
export function useApi<T>(
  fetcher: (signal: AbortSignal) => Promise<T>,
  deps: readonly unknown[],
  refreshMs?: number,
): ApiState<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [updatedAt, setUpdatedAt] = useState<number | null>(null);
  const controller = useRef<AbortController | null>(null);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;

  const run = useCallback(() => {
    controller.current?.abort();
    const c = new AbortController();
    controller.current = c;
    setLoading(true);
    fetcherRef
      .current(c.signal)
      .then((result) => {
        if (c.signal.aborted) return;
        setData(result);
        setError(null);
        setUpdatedAt(Date.now());
      })
      .catch((e: unknown) => {
        if (c.signal.aborted || isAbort(e)) return;
        setError(e);
      })
      .finally(() => {
        if (!c.signal.aborted) setLoading(false);
      });
  }, deps);

  useEffect(() => {
    run();
    const timer = refreshMs ? setInterval(run, refreshMs) : null;
    return () => {
      if (timer) clearInterval(timer);
      controller.current?.abort();
    };
  }, [run, refreshMs]);

  return { data, error, loading, updatedAt, reload: run };
}

/**
 * A callback that runs `fn` once, `ms` after the last of a burst of calls — or at the latest `maxWaitMs` after
 * the burst's first call, so a steady stream of events still refreshes the page now and then.
 */
export function useDebounced(fn: () => void, ms: number, maxWaitMs: number = ms * 6): () => void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const burstStart = useRef<number | null>(null);
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  return useCallback(() => {
    const now = Date.now();
    burstStart.current ??= now;
    if (timer.current) clearTimeout(timer.current);
    const wait = Math.max(0, Math.min(ms, burstStart.current + maxWaitMs - now));
    timer.current = setTimeout(() => {
      timer.current = null;
      burstStart.current = null;
      fnRef.current();
    }, wait);
  }, [ms, maxWaitMs]);
}

/** The current time, updated every `ms`. */
export function useNow(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}
