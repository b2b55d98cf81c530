// Call quality from getStats(): packet loss over the last interval, jitter, round-trip time.

export class QualityMeter {
  constructor(pc) {
    this.pc = pc;
    this.previous = null;
  }

  /** {grade: 'good'|'fair'|'poor'|'unknown', lossPct, jitterMs, rttMs} */
  async sample() {
    let report;
    try {
      report = await this.pc.getStats();
    } catch {
      return { grade: 'unknown' };
    }
    let inbound = null;
    let pairRtt = null;
    let remoteRtt = null;
    let selectedPair = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') inbound = s;
      if (s.type === 'remote-inbound-rtp' && s.kind === 'audio' && s.roundTripTime != null) {
        remoteRtt = s.roundTripTime;
      }
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        selectedPair = s.selectedCandidatePairId;
      }
    });
    report.forEach((s) => {
      if (s.type !== 'candidate-pair' || s.currentRoundTripTime == null) return;
      if (s.id === selectedPair || (!selectedPair && s.nominated)) pairRtt = s.currentRoundTripTime;
    });
    const result = { grade: 'unknown', lossPct: null, jitterMs: null, rttMs: null };
    const rtt = remoteRtt ?? pairRtt;
    if (rtt != null) result.rttMs = Math.round(rtt * 1000);
    if (inbound) {
      result.jitterMs = Math.round((inbound.jitter || 0) * 1000);
      const lost = inbound.packetsLost || 0;
      const received = inbound.packetsReceived || 0;
      const before = this.previous || { lost: 0, received: 0 };
      const dLost = Math.max(0, lost - before.lost);
      const dReceived = Math.max(0, received - before.received);
      this.previous = { lost, received };
      result.lossPct = dLost + dReceived > 0 ? (100 * dLost) / (dLost + dReceived) : 0;
      result.flowing = dReceived > 0;
    }
    result.grade = grade(result);
    return result;
  }
}

function grade({ lossPct, jitterMs, rttMs, flowing }) {
  if (lossPct == null) return 'unknown';
  if (flowing === false) return 'poor';
  const rtt = rttMs ?? 0;
  if (lossPct < 2 && jitterMs < 30 && rtt < 250) return 'good';
  if (lossPct < 8 && jitterMs < 60 && rtt < 500) return 'fair';
  return 'poor';
}
