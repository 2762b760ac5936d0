// Connection quality in three levels, for our own link and for each tile,
// from the peer connections' statistics (sampled every few seconds) and
// the SFU's signals: packet loss, round-trip time, jitter, a video paused
// for lack of bandwidth, or a layer much smaller than its tile.

const SVG_NS = "http://www.w3.org/2000/svg";
const BARS = ["M5 20v-4", "M12 20v-9", "M19 20v-15"]; // short to tall
// Thresholds close to those of common video meeting clients: a few percent
// of loss is audible, half a second of round trip breaks conversation.
const FAIR = { loss: 0.02, rtt: 0.25, jitter: 0.04 };
const POOR = { loss: 0.08, rtt: 0.5, jitter: 0.1 };
const LEVELS = ["good", "fair", "poor"];
// Senders report "bandwidth" while their estimate ramps up after a start:
// only a limitation that lasts this many samples counts.
const LIMITED_SAMPLES = 3;

// sample: {loss (0-1), rtt (s), jitter (s), starved (the SFU paused a video
// for bandwidth: fair at worst), limited (sender held back by bandwidth, or a layer far
// below the tile's size)}; missing figures count as fine.
export function grade(sample) {
  const { loss = 0, rtt = 0, jitter = 0, starved = false, limited = false } = sample;
  if (loss >= POOR.loss || rtt >= POOR.rtt || jitter >= POOR.jitter) return "poor";
  // A video paused for bandwidth also happens while the estimate ramps up
  // after a join: a sign of a limited link, not of a broken one.
  if (starved || limited || loss >= FAIR.loss || rtt >= FAIR.rtt || jitter >= FAIR.jitter) return "fair";
  return "good";
}

function worse(a, b) {
  return LEVELS.indexOf(a) >= LEVELS.indexOf(b) ? a : b;
}

// Round-trip time of the candidate pair in use, in seconds (null: unknown).
function pairRtt(stats) {
  let rtt = null;
  stats?.forEach((report) => {
    if (report.type === "candidate-pair" && report.nominated && report.state === "succeeded"
        && typeof report.currentRoundTripTime === "number") {
      rtt = Math.max(rtt ?? 0, report.currentRoundTripTime);
    }
  });
  return rtt;
}

export class QualityMeter {
  constructor() {
    this.counters = new Map(); // inbound-rtp id -> {lost, received} at the last sample
    this.limitedRun = 0; // consecutive samples with a bandwidth-limited sender
  }

  // Loss fraction of one inbound stream since the previous sample.
  lossSince(report) {
    const lost = Math.max(0, report.packetsLost ?? 0);
    const received = report.packetsReceived ?? 0;
    const before = this.counters.get(report.id) ?? { lost, received };
    this.counters.set(report.id, { lost, received });
    const newLost = lost - before.lost;
    const total = newLost + (received - before.received);
    return total > 0 ? newLost / total : 0;
  }

  // pub, sub: the peer connections (may be null); sources: mid -> {participant_id,
  // kind, source_id}; starved: source ids the SFU paused for bandwidth;
  // tileHeight(participantId): the tile's height in device pixels.
  // Returns {own: level | null, tiles: Map(participant id -> level)}.
  async sample(pub, sub, sources, starved, tileHeight) {
    const [pubStats, subStats] = await Promise.all([
      pub ? pub.getStats() : null, sub ? sub.getStats() : null]);
    const rtt = Math.max(pairRtt(pubStats) ?? 0, pairRtt(subStats) ?? 0);
    const own = { rtt, loss: 0, jitter: 0, limited: false };
    let limitedNow = false;
    pubStats?.forEach((report) => {
      if (report.type === "remote-inbound-rtp") {
        own.loss = Math.max(own.loss, report.fractionLost ?? 0);
        own.jitter = Math.max(own.jitter, report.jitter ?? 0);
      } else if (report.type === "outbound-rtp" && report.qualityLimitationReason === "bandwidth") {
        limitedNow = true;
      }
    });
    this.limitedRun = limitedNow ? this.limitedRun + 1 : 0;
    own.limited = this.limitedRun >= LIMITED_SAMPLES;
    const perTile = new Map(); // participant id -> sample
    subStats?.forEach((report) => {
      if (report.type !== "inbound-rtp") return;
      const info = sources.get(report.mid);
      if (!info) return;
      const tile = perTile.get(info.participant_id) ?? { rtt, loss: 0, jitter: 0 };
      const loss = this.lossSince(report);
      tile.loss = Math.max(tile.loss, loss);
      tile.jitter = Math.max(tile.jitter, report.jitter ?? 0);
      tile.starved ||= starved.has(info.source_id);
      const height = tileHeight(info.participant_id);
      if (info.kind === "video" && report.frameHeight && height >= 270
          && report.frameHeight < height * 0.4) {
        tile.limited = true; // the SFU sends a layer far smaller than the tile
      }
      perTile.set(info.participant_id, tile);
      // What we receive is part of our own link too.
      own.loss = Math.max(own.loss, loss);
    });
    const tiles = new Map([...perTile].map(([id, sample]) => [id, grade(sample)]));
    const measured = pubStats !== null || subStats !== null;
    let ownLevel = measured ? grade(own) : null;
    for (const [id, sample] of perTile) {
      if (sample.starved && ownLevel) ownLevel = worse(ownLevel, tiles.get(id));
    }
    return { own: ownLevel, tiles };
  }
}

// The three-bar indicator of a tile: role="img" with a spoken label.
export function qualityBadge() {
  const badge = document.createElement("span");
  badge.className = "quality";
  badge.setAttribute("role", "img");
  badge.hidden = true;
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("quality-bars");
  BARS.forEach((d, i) => {
    const bar = document.createElementNS(SVG_NS, "path");
    bar.setAttribute("d", d);
    bar.classList.add(`bar${i + 1}`);
    svg.append(bar);
  });
  badge.append(svg);
  return badge;
}

export function showQuality(badge, level, label) {
  if (!badge) return;
  badge.hidden = level == null;
  if (level == null) return;
  if (badge.dataset.level === level && badge.getAttribute("aria-label") === label) return;
  badge.dataset.level = level;
  badge.setAttribute("aria-label", label);
  badge.title = label;
}
