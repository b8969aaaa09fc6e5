import { act, render } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Snapshot } from './api';
import { STALE_AFTER_MS, useEventStream, type StreamState } from './stream';
import { FakeEventSource, snapshot, threeNodes } from './testdata';

const factory = (url: string) => new FakeEventSource(url);

describe('useEventStream', () => {
  let state: StreamState;
  const snaps: Snapshot[] = [];
  function Probe() {
    state = useEventStream({ onSnapshot: (s) => snaps.push(s), onDecision: () => {} }, '/api/v1/events', factory);
    return null;
  }

  beforeEach(() => {
    vi.useFakeTimers();
    FakeEventSource.all = [];
    snaps.length = 0;
  });
  afterEach(() => vi.useRealTimers());

  it('is live once a snapshot arrives and stale when they stop', () => {
    render(<Probe />);
    expect(state.connection).toBe('connecting');
    act(() => FakeEventSource.all[0].emit('snapshot', snapshot(1, threeNodes())));
    expect(state.connection).toBe('live');
    expect(snaps).toHaveLength(1);
    act(() => vi.advanceTimersByTime(STALE_AFTER_MS + 600));
    expect(state.connection).toBe('stale');
    act(() => FakeEventSource.all[0].emit('snapshot', snapshot(2, threeNodes())));
    expect(state.connection).toBe('live');
  });

  it('leaves transient errors to the browser and reopens a stream the browser gave up', () => {
    render(<Probe />);
    act(() => FakeEventSource.all[0].fail(false));
    expect(FakeEventSource.all).toHaveLength(1);
    act(() => FakeEventSource.all[0].fail(true));
    expect(FakeEventSource.all[0].closed).toBe(true);
    act(() => vi.advanceTimersByTime(2100));
    expect(FakeEventSource.all).toHaveLength(2);
    act(() => FakeEventSource.all[1].emit('snapshot', snapshot(3, threeNodes())));
    expect(state.connection).toBe('live');
    expect(state.reconnects).toBe(1);
  });

  it('skips a malformed event', () => {
    render(<Probe />);
    const es = FakeEventSource.all[0];
    act(() => {
      for (const fn of (es as unknown as { listeners: Map<string, ((e: MessageEvent) => void)[]> }).listeners.get('snapshot')!)
        fn(new MessageEvent('snapshot', { data: '{not json' }));
    });
    expect(snaps).toHaveLength(0);
    expect(state.connection).toBe('connecting');
  });

  it('closes the stream and its timers when unmounted', () => {
    const { unmount } = render(<Probe />);
    unmount();
    expect(FakeEventSource.all[0].closed).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });
});
