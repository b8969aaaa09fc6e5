// The cluster at a glance: leader, term, servers and workers, and every
// member with its gossip status, role (server with its Raft role, or
// worker), breaker and latest health. Members that are not alive
// are marked, and the whole table is marked stale when the stream is.

import type { Cluster, Member } from '../api';
import { bytes, nodeColor, num } from '../format';

export interface ClusterPanelProps {
  cluster: Cluster | null;
  stale: boolean;
  /** Colour index of a node (the charts' line colour); -1 if none. */
  colorOf: (name: string) => number;
  servedBy?: string;
  /** The node picked out in the charts, and how to pick one (again: none). */
  focus?: string | null;
  onFocus?: (name: string | null) => void;
}

const statusText: Record<string, string> = {
  alive: 'alive',
  suspect: 'suspect',
  dead: 'failed',
  left: 'left',
};

export function ClusterPanel({ cluster, stale, colorOf, servedBy, focus = null, onFocus }: ClusterPanelProps) {
  if (!cluster) {
    return (
      <section className="panel" aria-label="cluster">
        <h2>Cluster</h2>
        <p className="muted">Waiting for the first snapshot…</p>
      </section>
    );
  }
  const alive = cluster.members.filter((m) => m.status === 'alive').length;
  const servers = cluster.members.filter((m) => roleOf(m) === 'server').length;
  const workers = cluster.members.length - servers;
  return (
    <section className={'panel' + (stale ? ' stale' : '')} aria-label="cluster">
      <h2>Cluster</h2>
      <dl className="facts">
        <div>
          <dt>Leader</dt>
          <dd data-testid="leader">{cluster.leader.name || cluster.leader.id || 'none (election under way)'}</dd>
        </div>
        <div>
          <dt>Term</dt>
          <dd data-testid="term">{cluster.term}</dd>
        </div>
        <div>
          <dt>Members</dt>
          <dd data-testid="member-count">
            {alive} alive of {cluster.members.length}
          </dd>
        </div>
        <div>
          <dt>Roles</dt>
          <dd data-testid="role-count">
            {servers} server{servers === 1 ? '' : 's'}, {workers} worker{workers === 1 ? '' : 's'}
          </dd>
        </div>
        <div>
          <dt>Cluster id</dt>
          <dd className="mono">{cluster.cluster_id ? cluster.cluster_id.slice(0, 12) : '–'}</dd>
        </div>
        {servedBy && (
          <div>
            <dt>Seen from</dt>
            <dd>{servedBy}</dd>
          </div>
        )}
      </dl>
      <div className="table-scroll">
        <table className="members">
          <thead>
            <tr>
              <th>Node</th>
              <th>Status</th>
              <th>Role</th>
              <th>Breaker</th>
              <th className="num">Batch</th>
              <th className="num">Records/s</th>
              <th className="num">p99 ms</th>
              <th className="num">CPU %</th>
              <th className="num">Mem %</th>
              <th className="num">Queue</th>
              <th className="num">RSS</th>
            </tr>
          </thead>
          <tbody>
            {cluster.members.map((m) => (
              <MemberRow
                key={m.id || m.name}
                m={m}
                color={colorOf(m.name)}
                slo={cluster.limits.slo_ms}
                picked={focus === m.name}
                onPick={onFocus ? () => onFocus(focus === m.name ? null : m.name) : undefined}
              />
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** A member's role; older servers sent none, and every node was a server. */
export function roleOf(m: Member): 'server' | 'worker' {
  return m.role ?? 'server';
}

interface MemberRowProps {
  m: Member;
  color: number;
  slo: number;
  picked: boolean;
  onPick?: () => void;
}

function MemberRow({ m, color, slo, picked, onPick }: MemberRowProps) {
  const down = m.status === 'dead' || m.status === 'left';
  const h = m.health;
  return (
    <tr
      className={'member status-' + m.status + (picked ? ' picked' : '') + (onPick ? ' pickable' : '')}
      data-node={m.name}
      data-status={m.status}
      onClick={onPick}
      title={onPick ? (picked ? 'show every node alike in the charts' : 'pick out ' + m.name + ' in the charts') : undefined}
    >
      <td>
        <span className="swatch" style={{ background: color >= 0 ? nodeColor(color) : 'transparent' }} />
        {m.name || <span className="mono">{m.id.slice(0, 8)}</span>}
      </td>
      <td>
        <span className={'badge badge-' + m.status} title={m.status === 'dead' ? 'the failure detector declared it dead' : undefined}>
          {statusText[m.status] ?? m.status}
        </span>
      </td>
      <td data-testid="role">
        {roleOf(m) === 'worker' ? (
          <span className="role role-worker" title="a gossip member and lease client; not in Raft">worker</span>
        ) : (
          <span className={'role role-' + m.raft_role} title={'a server; its Raft role is ' + m.raft_role}>
            server · {m.raft_role}
          </span>
        )}
      </td>
      <td>{!down && h.breaker ? <span className={'badge breaker-' + h.breaker}>{h.breaker}</span> : '–'}</td>
      <td className="num">{down ? '–' : num(h.batch_size)}</td>
      <td className="num">{down ? '–' : num(h.throughput_rps)}</td>
      <td className={'num' + (!down && slo > 0 && h.p99_ms > slo ? ' over' : '')}>{down ? '–' : num(h.p99_ms, 1)}</td>
      <td className="num">{down ? '–' : num(h.cpu_percent, 1)}</td>
      <td className="num">{down ? '–' : num(h.mem_percent, 1)}</td>
      <td className="num">{down ? '–' : num(h.queue_depth)}</td>
      <td className="num">{down ? '–' : bytes(h.rss_bytes)}</td>
    </tr>
  );
}
