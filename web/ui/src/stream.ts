// The live connection to /api/v1/events. EventSource reconnects by itself
// after a network error; when the server answers with an error instead (the
// node is shutting down, a proxy in between failed) it gives up, so this
// starts a new one after a pause. The view is marked stale when no snapshot
// has arrived for a while.

import { useEffect, useRef, useState } from 'react';
import type { Decision, Snapshot } from './api';

export type Connection = 'connecting' | 'live' | 'stale';

/** A snapshot older than this marks the view stale. */
export const STALE_AFTER_MS = 3500;

export interface StreamHandlers {
  onSnapshot(s: Snapshot): void;
  onDecision(d: Decision): void;
}

/** The parts of EventSource the stream needs; tests pass a fake. */
export interface EventSourceLike {
  readyState: number;
  onopen: ((ev: Event) => void) | null;
  onerror: ((ev: Event) => void) | null;
  addEventListener(type: string, fn: (ev: MessageEvent) => void): void;
  close(): void;
}

export type EventSourceFactory = (url: string) => EventSourceLike;

const defaultFactory: EventSourceFactory = (url) => new EventSource(url);

export interface StreamState {
  connection: Connection;
  /** Local time (ms) the last snapshot arrived, 0 before the first. */
  lastSnapshotAt: number;
  reconnects: number;
}

export function useEventStream(
  handlers: StreamHandlers,
  url = '/api/v1/events',
  factory: EventSourceFactory = defaultFactory,
  now: () => number = Date.now,
): StreamState {
  const h = useRef(handlers);
  h.current = handlers;
  const [state, setState] = useState<StreamState>({ connection: 'connecting', lastSnapshotAt: 0, reconnects: 0 });

  useEffect(() => {
    let es: EventSourceLike | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let closed = false;
    let last = 0;
    let reconnects = 0;

    const open = () => {
      if (closed) return;
      es = factory(url);
      es.addEventListener('snapshot', (ev) => {
        let s: Snapshot;
        try {
          s = JSON.parse(ev.data) as Snapshot;
        } catch {
          return;
        }
        last = now();
        setState({ connection: 'live', lastSnapshotAt: last, reconnects });
        h.current.onSnapshot(s);
      });
      es.addEventListener('decision', (ev) => {
        try {
          h.current.onDecision(JSON.parse(ev.data) as Decision);
        } catch {
          /* a malformed event is skipped */
        }
      });
      es.onerror = () => {
        if (!es || es.readyState !== 2 /* CLOSED */) return; // the browser retries by itself
        es.close();
        reconnects++;
        retry = setTimeout(open, 2000);
      };
    };
    open();

    const watch = setInterval(() => {
      setState((st) => {
        const stale = last === 0 ? st.connection : now() - last > STALE_AFTER_MS ? 'stale' : 'live';
        return stale === st.connection ? st : { ...st, connection: stale };
      });
    }, 500);

    return () => {
      closed = true;
      clearInterval(watch);
      if (retry) clearTimeout(retry);
      es?.close();
    };
  }, [url, factory, now]);

  return state;
}
