// Tells the SFU how each remote video is shown, so it forwards the simulcast
// layer that fits the tile (a thumbnail gets 180p, a full screen 720p) and
// pauses videos nobody can see (scrolled away, hidden tab).

const SEND_DELAY_MS = 150; // coalesce bursts of resize / scroll events

export class TileWatcher {
  // send(message) posts a set_constraints message; sourceOf(participantId)
  // gives the video source id shown in that participant's tile.
  constructor(send) {
    this.send = send;
    this.tiles = new Map(); // participant id -> video element
    this.sources = new Map(); // participant id -> video source id
    this.visible = new Map(); // participant id -> bool (in the viewport)
    this.keyOf = new WeakMap(); // video element -> its key (a participant id, or "<id>#screen")
    this.last = "";
    this.timer = null;
    this.resizeObserver = new ResizeObserver(() => this.schedule());
    this.intersectionObserver = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const key = this.keyOf.get(entry.target);
        if (key) this.visible.set(key, entry.isIntersecting);
      }
      this.schedule();
    });
    this.onVisibility = () => this.schedule();
    document.addEventListener("visibilitychange", this.onVisibility);
  }

  watch(participantId, video) {
    if (this.tiles.get(participantId) === video) return;
    this.unwatch(participantId);
    this.tiles.set(participantId, video);
    this.keyOf.set(video, participantId);
    this.resizeObserver.observe(video);
    this.intersectionObserver.observe(video);
    this.schedule();
  }

  unwatch(participantId) {
    const video = this.tiles.get(participantId);
    if (!video) return;
    this.resizeObserver.unobserve(video);
    this.intersectionObserver.unobserve(video);
    this.tiles.delete(participantId);
    this.visible.delete(participantId);
    this.schedule();
  }

  setSource(participantId, sourceId) {
    if (sourceId) this.sources.set(participantId, sourceId);
    else this.sources.delete(participantId);
    this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), SEND_DELAY_MS);
  }

  flush() {
    const pageShown = document.visibilityState === "visible";
    const sources = {};
    for (const [participantId, sourceId] of this.sources) {
      const video = this.tiles.get(participantId);
      if (!video) continue;
      const height = Math.round(video.getBoundingClientRect().height * devicePixelRatio);
      const visible = pageShown && this.visible.get(participantId) !== false && height > 0;
      sources[sourceId] = { visible, max_height: Math.min(height, 4320) };
    }
    const message = JSON.stringify(sources);
    if (message === this.last || Object.keys(sources).length === 0) return;
    this.last = message;
    this.send({ type: "set_constraints", sources });
  }

  close() {
    clearTimeout(this.timer);
    this.resizeObserver.disconnect();
    this.intersectionObserver.disconnect();
    document.removeEventListener("visibilitychange", this.onVisibility);
  }
}
