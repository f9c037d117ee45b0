/**
 * The member table held in memory, as a MemberPicker: what the cluster's
 * object does over its storage, here for tests of the proxy against real
 * model servers. Reports come from the test (as hosts' reports would).
 */
import { applyReport, newMember, pick, type HealthReport, type Member } from '../../durable-objects/cluster/member-table.ts';
import type { MemberPick, MemberPicker } from '../../durable-objects/cluster/inference-proxy.ts';

export class TablePicker implements MemberPicker {
  readonly members = new Map<string, Member>();
  readonly picks: string[] = [];
  readonly failures: Array<{ host_id: string; error: string }> = [];
  private seq = 0;

  report(hostId: string, r: HealthReport): void {
    this.members.set(hostId, applyReport(this.members.get(hostId) ?? newMember(hostId), r, Date.now()));
  }

  async pick(tried: string[]): Promise<MemberPick | null> {
    // The hosts here keep reporting what they last said (a live host reports every few seconds);
    // a report of a new state, and the failures requests find, are the test's to give.
    for (const member of this.members.values()) member.reported_at = Date.now();
    const m = pick([...this.members.values()], Date.now(), new Set(tried));
    if (!m) return null;
    m.inflight++;
    m.picked_at = Date.now() + ++this.seq / 1e6;
    this.picks.push(m.host_id);
    return { host_id: m.host_id, port: m.port, lease: String(this.seq) };
  }

  async done(p: MemberPick, failed: string | null): Promise<void> {
    const m = this.members.get(p.host_id);
    if (!m) return;
    m.inflight--;
    if (failed) {
      m.failed_at = Date.now();
      m.error = failed;
      this.failures.push({ host_id: p.host_id, error: failed });
    }
  }
}
