// The connection's state: live, connecting, or stale (with how long since
// the last update and, since the serving node may be the one that went
// away, links to the dashboard on the other members).

import { useEffect, useState } from 'react';
import type { Cluster } from '../api';
import type { Connection } from '../stream';

export interface StatusBarProps {
  connection: Connection;
  lastSnapshotAt: number;
  cluster: Cluster | null;
  now?: () => number;
}

export function StatusBar({ connection, lastSnapshotAt, cluster, now = Date.now }: StatusBarProps) {
  const [, tick] = useState(0);
  useEffect(() => {
    if (connection !== 'stale') return;
    const t = setInterval(() => tick((x) => x + 1), 1000);
    return () => clearInterval(t);
  }, [connection]);

  if (connection === 'live') {
    return (
      <div className="status live" role="status" data-connection="live">
        ● live
      </div>
    );
  }
  if (connection === 'connecting') {
    return (
      <div className="status connecting" role="status" data-connection="connecting">
        ○ connecting…
      </div>
    );
  }
  const secs = lastSnapshotAt ? Math.round((now() - lastSnapshotAt) / 1000) : 0;
  const others = (cluster?.members ?? []).filter((m) => m.status === 'alive' && m.http_addr && m.http_addr !== location.host);
  return (
    <div className="status stale" role="alert" data-connection="stale">
      ◌ stale: no update for {secs}s, reconnecting…
      {others.length > 0 && (
        <span className="others">
          {' '}
          Other members:{' '}
          {others.slice(0, 5).map((m, i) => (
            <span key={m.name}>
              {i > 0 && ', '}
              <a href={`http://${m.http_addr}/`}>{m.name}</a>
            </span>
          ))}
        </span>
      )}
    </div>
  );
}
