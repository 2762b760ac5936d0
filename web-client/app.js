// visio web client: joins a room over the v1 signaling protocol
// (docs/protocol.md), publishes camera + microphone on one peer connection
// and shows every other participant from a second, server-offered one.

import { TileWatcher } from "./constraints.js";
import { pickLanguage, translator } from "./i18n.js";
import { setIcon } from "./icons.js";
import { StageLayout } from "./layout.js";
import { Preview } from "./prejoin.js";
import { QualityMeter, qualityBadge, showQuality } from "./quality.js";

const PROTOCOL_VERSION = 1;
const GATHER_TIMEOUT_MS = 2000;
const PING_INTERVAL_MS = 25000;
const QUALITY_INTERVAL_MS = 2000;
const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const NAME_STORAGE_KEY = "visio.name";
// This tab's last rejoin key ({room, key}): a reload within two minutes comes
// back with the same role (sessionStorage: never shared with another tab).
const REJOIN_STORAGE_KEY = "visio.rejoin";
// Rejoin after a lost connection: first try at once, then back off to 5 s.
const RECONNECT_DELAYS_MS = [300, 1000, 2000, 5000];
// A media connection "disconnected" this long is treated as lost.
const DISCONNECTED_GRACE_MS = 4000;
// Camera simulcast: 180p / 360p / 720p at Jitsi Meet's default bitrates.
// Screen share: one high-resolution, low-frame-rate encoding.
const SCREEN_ENCODINGS = [{ maxBitrate: 1_500_000, maxFramerate: 5 }];
const CAMERA_ENCODINGS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 200_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

// Join refusals that no retry can cure (docs/protocol.md, error codes).
const DEAD_LINK_ERRORS = new Set(["token_expired", "token_invalid", "wrong_room", "booking_cancelled"]);

const lang = pickLanguage();
const t = translator(lang);

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("join-form"),
  room: $("room"),
  name: $("name"),
  join: $("join"),
  leave: $("leave"),
  call: $("call"),
  tiles: $("tiles"),
  status: $("status"),
  roomLabel: $("room-label"),
  lockLabel: $("lock-label"),
  view: $("view"),
  share: $("share"),
  pager: $("pager"),
  pagePrev: $("page-prev"),
  pageNext: $("page-next"),
  pageLabel: $("page-label"),
  controls: $("controls"),
  mic: $("mic"),
  cam: $("cam"),
  hand: $("hand"),
  openPeople: $("open-people"),
  openChat: $("open-chat"),
  peopleCount: $("people-count"),
  unread: $("unread"),
  panel: $("panel"),
  tabPeople: $("tab-people"),
  tabChat: $("tab-chat"),
  panelClose: $("panel-close"),
  peoplePanel: $("people-panel"),
  chatPanel: $("chat-panel"),
  people: $("people"),
  hostActions: $("host-actions"),
  muteAll: $("mute-all"),
  lowerHands: $("lower-hands"),
  lectureMode: $("lecture-mode"),
  lectureLabel: $("lecture-label"),
  lockRoom: $("lock-room"),
  chatLog: $("chat-log"),
  chatForm: $("chat-form"),
  chatInput: $("chat-input"),
  joinNotice: $("join-notice"),
};

const preview = new Preview({
  video: $("preview"),
  avatar: $("preview-off"),
  cameraSelect: $("camera-select"),
  micSelect: $("mic-select"),
  level: $("mic-level"),
  notice: $("media-notice"),
  retry: $("media-retry"),
}, t);

// Read by the browser tests (getStats on both peer connections).
window.visio = {
  pcs: { publish: null, subscribe: null },
  ws: null,
  // subscribe m-line mid -> {source_id, participant_id, kind} (for getStats per tile)
  tracks: () => Object.fromEntries(session?.midInfo ?? []),
  // The pre-join preview's tracks ("kind:label"), while it runs.
  preview: () => preview.stream?.getTracks().map((track) => `${track.kind}:${track.label}`) ?? null,
};

const layout = new StageLayout(ui.tiles,
  { root: $("strip-wrap"), list: $("strip"), prev: $("strip-prev"), next: $("strip-next") },
  { root: ui.pager, prev: ui.pagePrev, next: ui.pageNext, label: ui.pageLabel }, t);
layout.apply = () => session?.relayout();

let session = null;

function setStatus(text, kind = "info") {
  ui.status.textContent = text;
  ui.status.dataset.kind = text ? kind : "";
}

// Resolves once ICE gathering is complete, or after timeoutMs (v1 has no
// trickle ICE: the description is sent with whatever was gathered by then).
function waitForGathering(pc, timeoutMs = GATHER_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

function errorText(msg) {
  const detail = { message: msg.message ?? msg.code ?? "" };
  const key = `errors.${msg.code}`;
  const text = t(key, detail);
  return text === key ? t("serverError", detail) : text;
}

class Session {
  // stream: the camera and microphone opened by the pre-join preview (it
  // may lack either track, or both).
  constructor(room, name, token, stream) {
    this.room = room;
    this.token = token; // a booking's join token, from the meeting link's ?token=
    this.name = name;
    this.ws = null;
    this.participantId = null;
    this.joined = false;
    this.closed = false;
    this.localStream = stream;
    this.pcConfig = null;
    this.pub = null;
    this.sub = null;
    this.nextRequestId = 1;
    this.joinRequestId = null;
    this.publishRequestId = null;
    this.participants = new Map(); // participant id -> display name
    this.departed = new Set(); // ids of participants who left (no tile for them again)
    this.tiles = new Map(); // participant id -> {figure, video, caption, ownStream}
    this.midInfo = new Map(); // subscribe m-line mid -> {source_id, participant_id, kind} | null
    this.subscribeQueue = Promise.resolve();
    this.watcher = null; // TileWatcher, once joined
    this.pingTimer = null;
    this.localTile = null;
    this.role = "participant";
    this.states = new Map(); // participant id -> {name, role, mic, cam, hand}
    this.me = { mic: true, cam: true, hand: false };
    this.speaker = null; // participant id of the active speaker
    this.unread = 0;
    this.generation = 0; // bumped on every reconnection: stale callbacks check it
    this.reconnecting = false;
    this.reconnectAttempts = 0;
    this.reconnectTimer = null;
    this.videoOrder = new Map(); // participant id -> their video source ids, in order
    this.screens = new Map(); // participant id -> presentation tile
    this.screenStream = null; // our own shared screen
    this.screenTransceiver = null;
    this.cameraTransceiver = null;
    this.ownSources = new Map(); // our own source id -> publish m-line mid (publish_layers)
    this.rejoinKey = null; // from joined: proves it is us again after a reconnection
    this.lecture = false; // lecture mode: only hosts and presenters send video
    this.quality = new QualityMeter();
    this.qualityTimer = null;
    this.starved = new Set(); // source ids the SFU paused for lack of bandwidth
  }

  start() {
    if (!this.localStream?.getTracks().length) this.localStream = null;
    this.showLocalTile();
    renderControls(this);
    this.connect();
  }

  // ---- signaling -------------------------------------------------------

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws = ws;
    window.visio.ws = ws;
    if (this.localStream && !this.reconnecting) setStatus(t("connecting"));
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.joinRequestId = this.send({
        type: "join",
        v: PROTOCOL_VERSION,
        room: this.room,
        name: this.name,
        ...(this.token ? { token: this.token } : {}),
        ...(this.rejoinFor() ? { rejoin: this.rejoinFor() } : {}),
      });
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_INTERVAL_MS);
    });
    ws.addEventListener("message", (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        console.warn("visio: ignoring non-JSON frame", event.data);
        return;
      }
      if (ws === this.ws && msg && typeof msg === "object") this.handle(msg);
    });
    ws.addEventListener("close", () => {
      if (this.closed || ws !== this.ws) return;
      if (this.joined || this.reconnecting) this.reconnect();
      else this.end(t("connectionFailed"), "error");
    });
  }

  // The rejoin key to send: this session's after a drop, else one a reload
  // of this tab left for the same room.
  rejoinFor() {
    if (this.reconnecting) return this.rejoinKey;
    try {
      const saved = JSON.parse(sessionStorage.getItem(REJOIN_STORAGE_KEY) ?? "null");
      return saved?.room === this.room && typeof saved.key === "string" ? saved.key : null;
    } catch {
      return null;
    }
  }

  // The socket or the media dropped: start again with a new session (the
  // server removes the old participant when its socket closes). Local media
  // keeps running; the user does nothing.
  reconnect() {
    if (this.closed || this.reconnectTimer) return;
    this.teardownConnection();
    this.reconnecting = true;
    document.body.classList.add("reconnecting");
    setStatus(t("reconnecting"), "warn");
    const delay = RECONNECT_DELAYS_MS[Math.min(this.reconnectAttempts,
      RECONNECT_DELAYS_MS.length - 1)];
    this.reconnectAttempts += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closed) this.connect();
    }, delay);
  }

  // Closes the socket and both peer connections and forgets the room's
  // state, keeping the local camera and microphone.
  teardownConnection() {
    this.generation += 1;
    clearInterval(this.pingTimer);
    clearInterval(this.qualityTimer);
    this.starved.clear();
    this.watcher?.close();
    this.watcher = null;
    for (const pc of [this.pub, this.sub]) pc?.close();
    this.pub = null;
    this.sub = null;
    window.visio.pcs.publish = null;
    window.visio.pcs.subscribe = null;
    const ws = this.ws;
    this.ws = null;
    window.visio.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
    for (const id of [...this.tiles.keys()]) this.removeTile(id);
    for (const id of [...this.screens.keys()]) this.removeScreenTile(id);
    for (const track of this.screenStream?.getTracks() ?? []) track.stop();
    this.screenStream = null;
    this.screenTransceiver = null;
    this.cameraTransceiver = null;
    this.ownSources.clear();
    this.published = false;
    this.videoOrder.clear();
    renderControls(this);
    this.joined = false;
    this.participants.clear();
    this.departed.clear();
    this.states.clear();
    this.midInfo = new Map();
    this.subscribeQueue = Promise.resolve();
    this.speaker = null;
    this.renderPeople();
  }

  // Sends a client message; requests get a fresh id, which is returned.
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return null;
    let id = null;
    if (msg.type !== "subscribe_answer" && msg.type !== "leave") {
      id = this.nextRequestId++;
      msg = { ...msg, id };
    }
    this.ws.send(JSON.stringify(msg));
    return id;
  }

  handle(msg) {
    switch (msg.type) {
      case "joined":
        this.onJoined(msg);
        break;
      case "publish_answer":
        if (this.pub && msg.id === this.publishRequestId) {
          const generation = this.generation;
          this.noteOwnSources(msg.sources);
          this.pub
            .setRemoteDescription({ type: "answer", sdp: msg.sdp })
            .then(() => {
              if (this.localStream && !this.published) setStatus(t("joinedRoom", { room: this.room }));
              this.published = true;
            })
            .catch((err) => this.fail("publish answer", err, generation));
        }
        break;
      case "subscribe_offer":
        // Offers are applied strictly one after the other.
        {
          const generation = this.generation;
          this.subscribeQueue = this.subscribeQueue
            .then(() => generation === this.generation && this.onSubscribeOffer(msg))
            .catch((err) => this.fail("subscribe offer", err, generation));
        }
        break;
      case "participant_joined":
        if (msg.participant && msg.participant.id !== this.participantId) {
          this.participants.set(msg.participant.id, msg.participant.name);
          this.ensureTile(msg.participant.id);
        }
        break;
      case "participant_left":
        this.departed.add(msg.participant_id);
        this.participants.delete(msg.participant_id);
        this.states.delete(msg.participant_id);
        this.videoOrder.delete(msg.participant_id);
        this.removeScreenTile(msg.participant_id);
        this.removeTile(msg.participant_id);
        this.renderPeople();
        break;
      case "error":
        this.onError(msg);
        break;
      case "source_paused":
      case "source_resumed":
        if (msg.type === "source_paused" && msg.reason === "bandwidth") this.starved.add(msg.source_id);
        else this.starved.delete(msg.source_id);
        this.onSourcePaused(msg.source_id, msg.type === "source_paused");
        break;
      case "participant_state":
        this.onParticipantState(msg);
        break;
      case "chat":
        this.onChat(msg);
        break;
      case "muted":
        this.setMic(false, false);
        setStatus(t("mutedBy", { by: msg.by }), "warn");
        break;
      case "unmute_requested":
        setStatus(t("unmuteRequested", { by: msg.by }), "warn");
        ui.mic.focus();
        break;
      case "removed":
        this.end(t("removedBy", { by: msg.by }), "error");
        break;
      case "room_locked":
        this.setLocked(msg.locked);
        setStatus(t(msg.locked ? "lockedBy" : "unlockedBy", { by: msg.by }));
        break;
      case "lecture":
        this.setLecture(msg.enabled === true, msg.by);
        break;
      case "publish_layers":
        this.onPublishLayers(msg);
        break;
      case "active_speaker":
        this.setSpeaker(msg.participant_id);
        break;
      case "source_added":
        if (msg.source?.participant_id === this.participantId && msg.source.mid != null) {
          this.noteOwnSources({ [msg.source.mid]: msg.source.id });
        } else if (msg.source?.kind === "video") {
          this.noteVideoSource(msg.source);
        }
        break;
      case "source_removed":
        for (const list of this.videoOrder.values()) {
          const at = list.indexOf(msg.source_id);
          if (at >= 0) list.splice(at, 1);
        }
        break;
      case "ok":
      case "pong":
        // Media changes arrive as subscribe offers; nothing to do here.
        break;
      default:
        console.debug("visio: unhandled message", msg);
    }
  }

  onJoined(msg) {
    this.joined = true;
    if (this.reconnecting) {
      this.reconnecting = false;
      this.reconnectAttempts = 0;
      document.body.classList.remove("reconnecting");
      setStatus(t("reconnected"));
      // Tell the new session's room what we showed before the drop.
      const { mic, cam, hand } = this.me;
      if (!mic || !cam || hand) this.send({ type: "set_state", mic, cam, hand });
    }
    this.participantId = msg.participant_id;
    this.rejoinKey = typeof msg.rejoin_key === "string" ? msg.rejoin_key : null;
    try {
      sessionStorage.setItem(REJOIN_STORAGE_KEY, JSON.stringify({ room: this.room, key: this.rejoinKey }));
    } catch {
      // Storage unavailable: only an automatic reconnection keeps the role.
    }
    this.role = msg.role === "host" ? "host" : "participant";
    this.lecture = Boolean(msg.meeting?.lecture);
    this.setLecture(this.lecture);
    ui.hostActions.hidden = this.role !== "host";
    ui.controls.hidden = false;
    this.setLocked(Boolean(msg.meeting?.locked));
    this.watcher = new TileWatcher((message) => this.send(message));
    clearInterval(this.qualityTimer);
    this.qualityTimer = setInterval(() => this.sampleQuality(), QUALITY_INTERVAL_MS);
    this.pcConfig = {
      iceServers: Array.isArray(msg.ice_servers) ? msg.ice_servers : [],
      bundlePolicy: "max-bundle",
    };
    for (const p of msg.participants ?? []) {
      this.participants.set(p.id, p.name);
      this.ensureTile(p.id);
    }
    for (const state of msg.meeting?.participants ?? []) this.onParticipantState(state);
    for (const source of msg.sources ?? []) {
      if (source.kind === "video") this.noteVideoSource(source);
    }
    if (this.localStream) {
      const generation = this.generation;
      this.publish().catch((err) => this.fail("publish", err, generation));
    } else {
      setStatus(t("joinedRoom", { room: this.room }));
    }
  }

  onError(msg) {
    console.warn("visio: server error", msg);
    if (msg.code === "stale_revision") return; // a newer offer is on its way
    if (!this.joined && msg.id != null && msg.id === this.joinRequestId) {
      // Refused at the door (full, locked): back to the pre-join screen with
      // its preview, the reason in plain words. A link that can never work
      // again (expired, cancelled): only the reason, camera off.
      const dead = DEAD_LINK_ERRORS.has(msg.code);
      this.end(errorText(msg), "error", !dead);
      ui.form.classList.toggle("link-dead", dead);
      return;
    }
    setStatus(errorText(msg), "error");
  }

  // ---- room features (docs/protocol.md: room features, host controls) ---

  onParticipantState(state) {
    const id = state.participant_id;
    if (!id || this.departed.has(id)) return;
    const previous = this.states.get(id);
    this.states.set(id, state);
    if (id === this.participantId) {
      if (previous && Boolean(previous.presenter) !== Boolean(state.presenter)
          && this.lecture && this.role !== "host") {
        setStatus(t(state.presenter ? "presenterGranted" : "presenterRevoked"), "warn");
      }
      if (!previous || Boolean(previous.presenter) !== Boolean(state.presenter)) {
        this.applyPresentRight();
      }
      // The server may change our state (a host muted us): follow it.
      if (state.mic === false && this.me.mic) this.setMic(false, false);
      if (state.hand === false && this.me.hand) {
        this.me.hand = false; // a host lowered every hand
        renderControls(this);
      }
      this.renderTileState(this.localTile, state);
    } else {
      if (state.screen && previous && !previous.screen) {
        setStatus(t("presenting", { name: state.name }));
      }
      if (!this.participants.has(id)) this.participants.set(id, state.name);
      this.renderTileState(this.ensureTile(id), state);
    }
    this.renderPeople();
  }

  renderTileState(tile, state) {
    if (!tile) return;
    const withheld = !this.mayPresent(state);
    tile.figure.classList.toggle("mic-off", state.mic === false);
    tile.figure.classList.toggle("cam-off", state.cam === false);
    tile.figure.classList.toggle("hand-up", state.hand === true);
    tile.figure.classList.toggle("host", state.role === "host");
    tile.figure.classList.toggle("withheld", withheld);
    tile.figure.dataset.note = withheld ? t("videoWithheld") : "";
    const notes = [];
    if (state.hand) notes.push(t("handRaised"));
    if (state.mic === false) notes.push(t("micStateOff"));
    if (withheld) notes.push(t("videoWithheld"));
    tile.status.textContent = notes.join(", ");
  }

  setMic(on, tell = true) {
    for (const track of this.localStream?.getAudioTracks() ?? []) track.enabled = on;
    this.me.mic = on;
    renderControls(this);
    if (tell) this.send({ type: "set_state", mic: on });
    this.renderTileState(this.localTile, { ...this.states.get(this.participantId), ...this.me, role: this.role });
  }

  setCam(on) {
    for (const track of this.localStream?.getVideoTracks() ?? []) track.enabled = on;
    this.me.cam = on;
    renderControls(this);
    this.send({ type: "set_state", cam: on });
    this.renderTileState(this.localTile, { ...this.states.get(this.participantId), ...this.me, role: this.role });
  }

  setHand(up) {
    this.me.hand = up;
    renderControls(this);
    this.send({ type: "set_state", hand: up });
  }

  // ---- connection quality ----------------------------------------------

  async sampleQuality() {
    const generation = this.generation;
    const sources = new Map([...this.midInfo].filter(([, info]) => info));
    const tileHeight = (id) =>
      (this.tiles.get(id)?.figure.getBoundingClientRect().height ?? 0) * devicePixelRatio;
    let result;
    try {
      result = await this.quality.sample(this.pub, this.sub, sources, this.starved, tileHeight);
    } catch {
      return; // a connection closed meanwhile: the next sample will tell
    }
    if (this.closed || generation !== this.generation) return;
    const word = (level) => t(`quality.${level}_word`);
    showQuality(this.localTile?.quality, result.own,
      result.own && t("quality.own", { level: word(result.own) }));
    for (const [id, tile] of this.tiles) {
      const level = result.tiles.get(id) ?? null;
      showQuality(tile.quality, level, level && t(`quality.${level}`));
    }
  }

  // ---- lecture mode (docs/protocol.md: lecture mode) ---------------------

  mayPresent(state) {
    return !this.lecture || state?.role === "host" || Boolean(state?.presenter);
  }

  canPresent() {
    return this.mayPresent({ ...this.states.get(this.participantId), role: this.role });
  }

  setLecture(enabled, by = null) {
    const changed = this.lecture !== enabled;
    this.lecture = enabled;
    ui.lectureLabel.hidden = !enabled;
    ui.lectureMode.setAttribute("aria-pressed", String(enabled));
    ui.lectureMode.textContent = t(enabled ? "lectureOff" : "lectureOn");
    if (by && changed) setStatus(t(enabled ? "lectureStarted" : "lectureEnded", { by }), "warn");
    for (const [id, state] of this.states) {
      this.renderTileState(id === this.participantId ? this.localTile : this.tiles.get(id), state);
    }
    this.renderPeople();
    this.applyPresentRight();
  }

  // Sends our camera only while we may: the server would refuse the offer
  // (not_presenter) and hide the video anyway.
  applyPresentRight() {
    renderControls(this);
    if (!this.pub) return;
    const allowed = this.canPresent();
    const generation = this.generation;
    const work = async () => {
      if (!allowed && this.screenStream) await this.stopShare();
      const camera = this.cameraTransceiver;
      const want = allowed ? "sendonly" : "inactive";
      if (!camera || !this.pub) return;
      if (camera.direction === want && camera.currentDirection === want) return;
      if (!allowed) {
        if (camera.currentDirection === "sendonly") camera.hasSent = true;
        camera.direction = "inactive";
      } else if (camera.hasSent) {
        // A simulcast m-line that has sent before cannot simply resume: the
        // browser no longer tags its packets with their layer (RID), so the
        // SFU could not tell the layers apart. A fresh m-line starts clean.
        await camera.sender.replaceTrack(null);
        camera.direction = "inactive";
        const track = this.localStream?.getVideoTracks()[0];
        if (track) {
          this.cameraTransceiver = this.pub.addTransceiver(track, {
            direction: "sendonly", streams: [this.localStream], sendEncodings: CAMERA_ENCODINGS,
          });
        }
      } else {
        camera.direction = "sendonly";
      }
      await this.renegotiate();
    };
    this.presentQueue = (this.presentQueue ?? Promise.resolve())
      .then(() => generation === this.generation && work())
      .catch((err) => this.fail("lecture mode", err, generation));
  }

  // publish_layers (docs/protocol.md): the SFU asks us to stop (or restart)
  // simulcast layers nobody receives. Unknown sources and malformed lists
  // are ignored; the lowest layer always stays on.
  onPublishLayers(msg) {
    const active = msg.active;
    if (!this.pub || !Array.isArray(active) || active.length === 0
        || !active.every((value) => typeof value === "boolean")) return;
    const mid = typeof msg.mid === "string" ? msg.mid : this.ownSources.get(msg.source_id);
    if (mid == null) return;
    const transceiver = this.pub.getTransceivers().find((tr) => tr.mid === mid);
    // An m-line being switched off (lecture mode) needs no layers.
    if (!transceiver || transceiver.direction !== "sendonly") return;
    const sender = transceiver.sender;
    const params = sender.getParameters();
    if (!params.encodings || params.encodings.length !== active.length) return;
    const wanted = active.map((on, i) => on || i === 0);
    if (params.encodings.every((encoding, i) => encoding.active === wanted[i])) return;
    params.encodings.forEach((encoding, i) => { encoding.active = wanted[i]; });
    // Harmless if refused (a renegotiation under way): the encoder simply
    // keeps its layers until the next publish_layers.
    sender.setParameters(params).catch((err) => console.warn("visio: publish layers", err));
  }

  noteOwnSources(sources) {
    if (!sources || typeof sources !== "object") return;
    for (const [mid, sourceId] of Object.entries(sources)) {
      if (typeof sourceId === "string") this.ownSources.set(sourceId, mid);
    }
  }

  setLocked(locked) {
    this.locked = locked;
    ui.lockLabel.hidden = !locked;
    ui.lockRoom.setAttribute("aria-pressed", String(locked));
    ui.lockRoom.textContent = t(locked ? "unlockRoom" : "lockRoom");
  }

  // ---- screen share (docs/protocol.md: by order, a participant's second
  // video source is their screen) -----------------------------------------

  noteVideoSource(source) {
    const list = this.videoOrder.get(source.participant_id) ?? [];
    if (!list.includes(source.id)) list.push(source.id);
    this.videoOrder.set(source.participant_id, list);
  }

  isScreen(info) {
    return (this.videoOrder.get(info.participant_id) ?? []).indexOf(info.source_id) === 1;
  }

  // After each subscribe offer: screens go to presentation tiles, cameras
  // and sound stay in the participant's tile.
  routeScreens() {
    const screenTracks = new Map();
    const cameraTracks = new Map();
    for (const transceiver of this.sub.getTransceivers()) {
      const info = this.midInfo.get(transceiver.mid);
      if (!info || this.departed.has(info.participant_id)) continue;
      const track = transceiver.receiver.track;
      if (info.kind === "video" && this.isScreen(info)) {
        screenTracks.set(info.participant_id, { track, sourceId: info.source_id });
      } else {
        const list = cameraTracks.get(info.participant_id) ?? [];
        list.push(track);
        cameraTracks.set(info.participant_id, list);
      }
    }
    for (const [participantId, { track, sourceId }] of screenTracks) {
      const tile = this.ensureScreenTile(participantId);
      if (tile.video.srcObject?.getVideoTracks()[0] !== track) {
        tile.video.srcObject = new MediaStream([track]);
        this.play(tile.video);
      }
      this.watcher?.setSource(`${participantId}#screen`, sourceId);
      // The browser's stream for this publisher holds the screen too: give
      // the camera tile a stream of its own tracks only.
      const camera = this.tiles.get(participantId);
      if (camera && camera.video.srcObject?.getTracks().includes(track)) {
        camera.ownStream = new MediaStream(cameraTracks.get(participantId) ?? []);
        camera.video.srcObject = camera.ownStream;
        this.play(camera.video);
      }
    }
    for (const participantId of [...this.screens.keys()]) {
      if (participantId !== this.participantId && !screenTracks.has(participantId)) {
        this.removeScreenTile(participantId);
      }
    }
  }

  ensureScreenTile(participantId) {
    let tile = this.screens.get(participantId);
    if (tile) return tile;
    const local = participantId === this.participantId;
    const name = local ? this.name : this.participants.get(participantId) ?? t("unknownParticipant");
    const label = t("presentationOf", { name });
    tile = this.makeTile(label, initialOf(name));
    tile.figure.classList.add("presentation");
    tile.figure.dataset.presenterId = participantId;
    tile.video.muted = true;
    tile.caption.textContent = label;
    this.screens.set(participantId, tile);
    ui.tiles.prepend(tile.figure);
    if (!local) this.watcher?.watch(`${participantId}#screen`, tile.video);
    this.relayout();
    return tile;
  }

  removeScreenTile(participantId) {
    const tile = this.screens.get(participantId);
    if (!tile) return;
    tile.video.srcObject = null;
    tile.figure.remove();
    this.screens.delete(participantId);
    this.watcher?.unwatch(`${participantId}#screen`);
    this.watcher?.setSource(`${participantId}#screen`, null);
    this.relayout();
  }

  async startShare() {
    if (this.screenStream || !this.pub) return;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({
        video: { frameRate: { max: 5 } }, audio: false,
      });
    } catch (err) {
      console.warn("visio: screen share refused", err);
      return; // the user cancelled the browser's picker
    }
    const track = stream.getVideoTracks()[0];
    if (!track || !this.pub || this.closed) {
      for (const each of stream.getTracks()) each.stop();
      return;
    }
    track.contentHint = "detail";
    track.addEventListener("ended", () => this.stopShare());
    this.screenStream = stream;
    // A second share reuses the m-line of the first (made inactive on stop).
    const idle = this.pub.getTransceivers().find((tr) => tr.isScreen && tr.direction === "inactive");
    if (idle) {
      idle.direction = "sendonly";
      await idle.sender.replaceTrack(track);
      idle.sender.setStreams(stream);
      this.screenTransceiver = idle;
    } else {
      this.screenTransceiver = this.pub.addTransceiver(track, {
        direction: "sendonly", streams: [stream], sendEncodings: SCREEN_ENCODINGS,
      });
      this.screenTransceiver.isScreen = true;
    }
    const tile = this.ensureScreenTile(this.participantId);
    tile.video.srcObject = stream;
    this.play(tile.video);
    renderControls(this);
    await this.renegotiate();
    this.send({ type: "set_state", screen: true });
  }

  async stopShare() {
    if (!this.screenStream) return;
    for (const track of this.screenStream.getTracks()) track.stop();
    this.screenStream = null;
    const transceiver = this.screenTransceiver;
    this.screenTransceiver = null;
    this.removeScreenTile(this.participantId);
    renderControls(this);
    if (transceiver && this.pub) {
      // inactive, not stopped: the m-line stays for the next share.
      await transceiver.sender.replaceTrack(null);
      transceiver.direction = "inactive";
      await this.renegotiate();
    }
    this.send({ type: "set_state", screen: false });
  }

  async renegotiate() {
    const pc = this.pub;
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc);
    if (this.closed || pc !== this.pub) return;
    this.publishRequestId = this.send({ type: "publish_offer", sdp: pc.localDescription.sdp });
  }

  // Shows the tiles of the current page, or the featured tile and thumbnails.
  relayout() {
    const remote = [...this.tiles.values()].map((tile) => tile.figure);
    const screens = [...this.screens.values()].map((tile) => tile.figure);
    const own = this.localTile ? [this.localTile.figure] : [];
    const figures = [...screens, ...own, ...remote];
    let featured = screens[0] ?? null; // a presentation takes the stage
    if (!featured && layout.view === "speaker") {
      // Never yourself while someone else can be shown: the last other speaker.
      featured = this.tiles.get(this.speaker)?.figure
        ?? this.tiles.get(this.lastRemoteSpeaker)?.figure
        ?? remote[0] ?? this.localTile?.figure ?? null;
    }
    layout.render(figures, featured);
  }

  setSpeaker(participantId) {
    this.speaker = participantId;
    if (participantId !== this.participantId) this.lastRemoteSpeaker = participantId;
    if (layout.view === "speaker") this.relayout();
    for (const [id, tile] of this.tiles) tile.figure.classList.toggle("speaking", id === participantId);
    this.localTile?.figure.classList.toggle("speaking", participantId === this.participantId);
    for (const row of ui.people.children) {
      row.classList.toggle("speaking", row.dataset.participantId === participantId);
    }
  }

  onChat(msg) {
    const item = document.createElement("li");
    item.className = "chat-line";
    if (msg.participant_id === this.participantId) item.classList.add("mine");
    const who = document.createElement("span");
    who.className = "chat-name";
    who.textContent = msg.participant_id === this.participantId
      ? t("you", { name: msg.name }) : msg.name;
    const time = document.createElement("time");
    const when = new Date(msg.ts ?? Date.now());
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
    const text = document.createElement("p");
    text.className = "chat-text";
    text.textContent = msg.text; // never HTML
    item.append(who, time, text);
    ui.chatLog.append(item);
    item.scrollIntoView({ block: "end" });
    if (ui.panel.hidden || ui.chatPanel.hidden) {
      this.unread += 1;
      ui.unread.textContent = String(this.unread);
      ui.unread.hidden = false;
      ui.openChat.setAttribute("aria-label",
        `${t("chatHeading")} – ${t("unreadMessages", { count: this.unread })}`);
    }
  }

  renderPeople() {
    const rows = [];
    const ids = [this.participantId, ...[...this.states.keys()].filter((id) => id !== this.participantId)];
    for (const id of ids) {
      const state = this.states.get(id);
      if (!state) continue;
      rows.push(this.personRow(id, state));
    }
    ui.people.replaceChildren(...rows);
    ui.peopleCount.textContent = String(rows.length);
    ui.openPeople.setAttribute("aria-label", t("participantCount", { count: rows.length }));
  }

  personRow(id, state) {
    const row = document.createElement("li");
    row.className = "person";
    row.dataset.participantId = id;
    row.classList.toggle("speaking", id === this.speaker);
    const name = document.createElement("span");
    name.className = "person-name";
    name.textContent = id === this.participantId ? `${state.name} ${t("youSuffix")}` : state.name;
    row.append(name);
    const tagged = (text, extra = "") => {
      const tag = document.createElement("span");
      tag.className = `tag ${extra}`;
      tag.textContent = text;
      row.append(tag);
    };
    if (state.role === "host") tagged(t("host"));
    else if (state.presenter) tagged(t("presenter"), "tag-presenter");
    const flags = document.createElement("span");
    flags.className = "person-flags";
    const flag = (iconName, label, kind) => {
      const holder = document.createElement("span");
      holder.className = `flag ${kind}`;
      holder.setAttribute("role", "img");
      holder.setAttribute("aria-label", label);
      holder.title = label;
      setIcon(holder, iconName);
      flags.append(holder);
    };
    if (state.hand) flag("hand", t("handRaised"), "flag-hand");
    flag(state.mic === false ? "mic-off" : "mic", state.mic === false ? t("micOff") : t("micOn"),
      state.mic === false ? "flag-off" : "");
    flag(state.cam === false ? "cam-off" : "cam", state.cam === false ? t("camOff") : t("camOn"),
      state.cam === false ? "flag-off" : "");
    row.append(flags);
    if (this.role === "host" && id !== this.participantId) {
      const actions = document.createElement("span");
      actions.className = "person-actions";
      const action = (short, label, onClick, extra = "") => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = `btn btn-small ${extra}`;
        button.textContent = short;
        button.setAttribute("aria-label", label);
        button.title = label;
        button.addEventListener("click", onClick);
        actions.append(button);
      };
      if (state.mic !== false) {
        action(t("muteShort"), t("muteOne", { name: state.name }),
          () => this.send({ type: "mute", participant_id: id }));
      } else {
        action(t("askShort"), t("askUnmute", { name: state.name }),
          () => this.send({ type: "ask_unmute", participant_id: id }));
      }
      // The right to present matters in lecture mode only: no clutter otherwise.
      if (state.role !== "host" && this.lecture) {
        action(t(state.presenter ? "revokeShort" : "grantShort"),
          t(state.presenter ? "revokePresenter" : "grantPresenter", { name: state.name }),
          () => this.send({ type: "set_presenter", participant_id: id, presenter: !state.presenter }),
          state.presenter ? "btn-presenter" : "");
      }
      action(t("removeShort"), t("removeOne", { name: state.name }), () => {
        if (confirm(t("confirmRemove", { name: state.name }))) {
          this.send({ type: "remove", participant_id: id });
        }
      }, "btn-danger");
      row.append(actions);
    }
    return row;
  }

  // ---- publish peer connection ----------------------------------------

  async publish() {
    if (!this.reconnectAttempts) setStatus(t("publishing"));
    const generation = this.generation;
    const pc = new RTCPeerConnection(this.pcConfig);
    this.pub = pc;
    window.visio.pcs.publish = pc;
    renderControls(this);
    this.watchConnection(pc);
    for (const track of this.localStream.getTracks()) {
      const init = { direction: "sendonly", streams: [this.localStream] };
      if (track.kind === "video") {
        init.sendEncodings = CAMERA_ENCODINGS;
        // Lecture mode without the right to present: the m-line waits, inactive.
        if (!this.canPresent()) init.direction = "inactive";
      }
      const transceiver = pc.addTransceiver(track, init);
      if (track.kind === "video") this.cameraTransceiver = transceiver;
    }
    await pc.setLocalDescription(await pc.createOffer());
    await waitForGathering(pc);
    if (this.closed || generation !== this.generation) return;
    this.publishRequestId = this.send({ type: "publish_offer", sdp: pc.localDescription.sdp });
  }

  // ---- subscribe peer connection --------------------------------------

  async onSubscribeOffer(msg) {
    if (this.closed) return;
    const generation = this.generation;
    let first = false;
    if (!this.sub) {
      first = true;
      const pc = new RTCPeerConnection(this.pcConfig ?? { bundlePolicy: "max-bundle" });
      this.sub = pc;
      window.visio.pcs.subscribe = pc;
      this.watchConnection(pc);
      pc.addEventListener("track", (event) => this.onTrack(event));
    }
    const pc = this.sub;
    // ontrack fires inside setRemoteDescription: the map must be current first.
    this.midInfo = new Map(Object.entries(msg.tracks ?? {}));
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    if (first) await waitForGathering(pc);
    if (this.closed || generation !== this.generation) return;
    this.send({ type: "subscribe_answer", revision: msg.revision, sdp: pc.localDescription.sdp });
    this.dropIdleTracks();
    this.routeScreens();
    this.updateVideoSources();
  }

  // Which video source each tile shows, for the constraints sent to the SFU.
  updateVideoSources() {
    const shown = new Map();
    for (const info of this.midInfo.values()) {
      if (info && info.kind === "video" && !this.isScreen(info)) {
        shown.set(info.participant_id, info.source_id);
      }
    }
    for (const [participantId, tile] of this.tiles) {
      const sourceId = shown.get(participantId) ?? null;
      // A new source starts unpaused: a pause belonged to the one it replaces.
      if (tile.sourceId !== sourceId) tile.figure.classList.remove("paused");
      tile.sourceId = sourceId;
      this.watcher?.setSource(participantId, sourceId);
    }
  }

  // The SFU stopped forwarding a video (tile hidden, or not enough bandwidth):
  // show the placeholder rather than a frozen last frame.
  onSourcePaused(sourceId, paused) {
    for (const info of this.midInfo.values()) {
      if (info && info.source_id === sourceId) {
        this.tiles.get(info.participant_id)?.figure.classList.toggle("paused", paused);
      }
    }
  }

  onTrack(event) {
    const info = this.midInfo.get(event.transceiver.mid);
    const stream = event.streams[0];
    // The msid of every subscribed m-line is its publisher's participant id.
    const participantId = info?.participant_id ?? stream?.id;
    if (!participantId || participantId === this.participantId) return;
    // An offer sent just before a participant_left may still name them.
    if (this.departed.has(participantId)) return;
    const tile = this.ensureTile(participantId);
    if (stream) {
      if (tile.video.srcObject !== stream) tile.video.srcObject = stream;
    } else {
      if (!tile.ownStream) tile.ownStream = new MediaStream();
      if (!tile.ownStream.getTracks().includes(event.track)) tile.ownStream.addTrack(event.track);
      if (tile.video.srcObject !== tile.ownStream) tile.video.srcObject = tile.ownStream;
    }
    this.play(tile.video);
  }

  // Tracks of recycled (inactive) m-lines leave browser-made streams on their
  // own; streams this client assembled itself are cleaned up here.
  dropIdleTracks() {
    for (const transceiver of this.sub.getTransceivers()) {
      if (this.midInfo.get(transceiver.mid)) continue;
      for (const tile of this.tiles.values()) {
        tile.ownStream?.removeTrack(transceiver.receiver.track);
      }
    }
  }

  watchConnection(pc) {
    let timer = null;
    pc.addEventListener("connectionstatechange", () => {
      clearTimeout(timer);
      if (this.closed || (pc !== this.pub && pc !== this.sub)) return;
      if (pc.connectionState === "failed") this.reconnect();
      else if (pc.connectionState === "disconnected") {
        timer = setTimeout(() => {
          if (pc.connectionState === "disconnected" && (pc === this.pub || pc === this.sub)) {
            this.reconnect();
          }
        }, DISCONNECTED_GRACE_MS);
      }
    });
  }

  fail(what, err, generation = this.generation) {
    // A peer connection closed by a reconnection makes its pending work fail.
    if (this.closed || generation !== this.generation) return;
    console.error(`visio: ${what} failed`, err);
    if (!this.closed) setStatus(`${t("mediaFailed")} (${err.name || err})`, "error");
  }

  // ---- tiles -----------------------------------------------------------

  makeTile(label, initial) {
    const figure = document.createElement("figure");
    figure.className = "tile";
    const avatar = document.createElement("div");
    avatar.className = "avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = initial;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.setAttribute("playsinline", "");
    video.setAttribute("aria-label", label);
    video.addEventListener("resize", () => {
      figure.classList.toggle("has-video", video.videoWidth > 0);
    });
    const caption = document.createElement("figcaption");
    const hand = document.createElement("span");
    hand.className = "tile-hand icon";
    setIcon(hand, "hand");
    const micOff = document.createElement("span");
    micOff.className = "tile-mic-off icon";
    setIcon(micOff, "mic-off");
    const nameEl = document.createElement("span");
    nameEl.className = "tile-name";
    const status = document.createElement("span");
    status.className = "visually-hidden";
    caption.append(hand, micOff, nameEl, status);
    const quality = qualityBadge();
    figure.append(avatar, video, caption, quality);
    return { figure, avatar, video, caption: nameEl, status, quality, ownStream: null };
  }

  showLocalTile() {
    const tile = this.makeTile(t("yourVideo"), initialOf(this.name));
    tile.figure.classList.add("local");
    tile.video.muted = true;
    tile.caption.textContent = t("you", { name: this.name });
    if (this.localStream) {
      tile.video.srcObject = this.localStream;
      this.play(tile.video);
    }
    this.localTile = tile;
    ui.tiles.prepend(tile.figure);
    this.relayout();
  }

  ensureTile(participantId) {
    let tile = this.tiles.get(participantId);
    const name = this.participants.get(participantId) ?? t("unknownParticipant");
    if (!tile) {
      tile = this.makeTile(t("videoOf", { name }), initialOf(name));
      tile.video.dataset.participantId = participantId;
      tile.figure.dataset.participantId = participantId;
      this.tiles.set(participantId, tile);
      ui.tiles.append(tile.figure);
      this.watcher?.watch(participantId, tile.video);
      tile.figure.classList.toggle("speaking", participantId === this.speaker);
      this.relayout();
    }
    tile.caption.textContent = name;
    tile.avatar.textContent = initialOf(name);
    tile.video.setAttribute("aria-label", t("videoOf", { name }));
    return tile;
  }

  removeTile(participantId) {
    const tile = this.tiles.get(participantId);
    if (!tile) return;
    tile.video.srcObject = null;
    tile.figure.remove();
    this.tiles.delete(participantId);
    this.watcher?.unwatch(participantId);
    this.watcher?.setSource(participantId, null);
    this.relayout();
  }

  // Autoplay with sound can be refused (no user gesture yet, e.g. after a
  // reload): fall back to muted playback and offer a button to unmute.
  play(video) {
    const attempt = video.play();
    if (!attempt) return;
    attempt.catch((err) => {
      if (err.name !== "NotAllowedError" || video.muted) return;
      video.muted = true;
      video.play().catch(() => {});
      offerSoundButton();
    });
  }

  // ---- teardown --------------------------------------------------------

  leave() {
    this.send({ type: "leave" });
    this.end(t("left"));
  }

  // Back to the pre-join screen, saying why; preview: turn the camera on
  // again there (a refused join), else leave it off (left, removed).
  end(statusText, kind = "info", restartPreview = false) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.qualityTimer);
    document.body.classList.remove("reconnecting");
    clearInterval(this.pingTimer);
    this.watcher?.close();
    for (const pc of [this.pub, this.sub]) pc?.close();
    window.visio.pcs.publish = null;
    window.visio.pcs.subscribe = null;
    this.stopLocalMedia();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
    for (const id of [...this.tiles.keys()]) this.removeTile(id);
    for (const id of [...this.screens.keys()]) this.removeScreenTile(id);
    if (this.localTile) {
      this.localTile.video.srcObject = null;
      this.localTile.figure.remove();
    }
    if (session === this) session = null;
    window.visio.ws = null;
    ui.chatLog.replaceChildren();
    ui.people.replaceChildren();
    showForm(statusText, kind, restartPreview);
  }

  stopLocalMedia() {
    for (const track of this.localStream?.getTracks() ?? []) track.stop();
    for (const track of this.screenStream?.getTracks() ?? []) track.stop();
  }
}

function initialOf(name) {
  const first = [...(name ?? "").trim()][0];
  return first ? first.toUpperCase() : "?";
}

function offerSoundButton() {
  if (document.getElementById("enable-sound")) return;
  const button = document.createElement("button");
  button.id = "enable-sound";
  button.type = "button";
  button.className = "btn btn-sound";
  button.textContent = t("enableSound");
  button.addEventListener("click", () => {
    for (const video of ui.call.querySelectorAll("video[data-participant-id]")) {
      video.muted = false;
      video.play().catch(() => {});
    }
    button.remove();
  });
  ui.leave.before(button);
}

// ---- page wiring -------------------------------------------------------

function renderControls(s) {
  const micOn = s?.me.mic ?? true;
  const camOn = s?.me.cam ?? true;
  const handUp = s?.me.hand ?? false;
  const hasAudio = Boolean(s?.localStream?.getAudioTracks().length);
  const hasVideo = Boolean(s?.localStream?.getVideoTracks().length);
  const set = (button, iconName, label, hint, pressed, off, usable) => {
    setIcon(button.querySelector(".icon"), iconName);
    button.querySelector(".ctl-label").textContent = label;
    button.setAttribute("aria-pressed", String(pressed));
    button.title = hint;
    button.classList.toggle("off", off);
    button.disabled = !usable;
  };
  set(ui.mic, micOn ? "mic" : "mic-off", micOn ? t("micOn") : t("micOff"),
    micOn ? t("micOnHint") : t("micOffHint"), micOn, !micOn, hasAudio);
  const mayPresent = s ? s.canPresent() : true;
  set(ui.cam, camOn ? "cam" : "cam-off", camOn ? t("camOn") : t("camOff"),
    mayPresent ? (camOn ? t("camOnHint") : t("camOffHint")) : t("notPresenterHint"),
    camOn, !camOn, hasVideo && mayPresent);
  set(ui.hand, "hand", handUp ? t("handUp") : t("handDown"), handUp ? t("handUp") : t("handDown"),
    handUp, false, true);
  ui.hand.classList.toggle("raised", handUp);
  const sharing = Boolean(s?.screenStream);
  set(ui.share, "screen", sharing ? t("stopSharing") : t("shareScreen"),
    mayPresent ? (sharing ? t("stopSharingHint") : t("shareScreenHint")) : t("notPresenterHint"),
    sharing, false, Boolean(s?.pub) && mayPresent);
  ui.share.hidden = !navigator.mediaDevices?.getDisplayMedia;
}

function openPanel(which) {
  const chat = which === "chat";
  ui.panel.hidden = false;
  ui.peoplePanel.hidden = chat;
  ui.chatPanel.hidden = !chat;
  ui.tabPeople.setAttribute("aria-selected", String(!chat));
  ui.tabChat.setAttribute("aria-selected", String(chat));
  ui.openPeople.setAttribute("aria-expanded", String(!chat));
  ui.openChat.setAttribute("aria-expanded", String(chat));
  ui.call.classList.add("with-panel");
  session?.relayout();
  if (chat && session) {
    session.unread = 0;
    ui.unread.hidden = true;
    ui.openChat.removeAttribute("aria-label");
    ui.chatInput.focus();
  }
}

function closePanel() {
  ui.panel.hidden = true;
  ui.call.classList.remove("with-panel");
  session?.relayout();
  ui.openPeople.setAttribute("aria-expanded", "false");
  ui.openChat.setAttribute("aria-expanded", "false");
}

function togglePanel(which) {
  const showing = !ui.panel.hidden && (which === "chat" ? !ui.chatPanel.hidden : !ui.peoplePanel.hidden);
  if (showing) closePanel();
  else openPanel(which);
}

function wireRoomControls() {
  ui.share.addEventListener("click", () => {
    if (!session) return;
    const action = session.screenStream ? session.stopShare() : session.startShare();
    action.catch((err) => session?.fail("screen share", err));
  });
  ui.view.addEventListener("click", () => {
    layout.view = layout.view === "speaker" ? "grid" : "speaker";
    layout.page = 0;
    ui.view.setAttribute("aria-pressed", String(layout.view === "speaker"));
    session?.relayout();
  });
  // The stage changes size with the window and when the side panel opens.
  let resizeTimer = null;
  new ResizeObserver(() => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => session?.relayout(), 100);
  }).observe(ui.tiles.parentElement);
  // The portrait panel sits just above the dock, whose height varies (wrapping).
  const dock = document.querySelector(".dock");
  new ResizeObserver(() => {
    document.documentElement.style.setProperty("--dock-height", `${dock.offsetHeight}px`);
    // A status line that wraps makes the dock taller: the grid fits again.
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => session?.relayout(), 100);
  }).observe(dock);
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => session?.relayout(), 100);
  });
  ui.mic.addEventListener("click", () => session?.setMic(!session.me.mic));
  ui.cam.addEventListener("click", () => session?.setCam(!session.me.cam));
  ui.hand.addEventListener("click", () => session?.setHand(!session.me.hand));
  ui.openPeople.addEventListener("click", () => togglePanel("people"));
  ui.openChat.addEventListener("click", () => togglePanel("chat"));
  ui.tabPeople.addEventListener("click", () => openPanel("people"));
  ui.tabChat.addEventListener("click", () => openPanel("chat"));
  ui.panelClose.addEventListener("click", closePanel);
  ui.panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closePanel();
  });
  ui.muteAll.addEventListener("click", () => session?.send({ type: "mute_all" }));
  ui.lowerHands.addEventListener("click", () => session?.send({ type: "lower_hands" }));
  ui.lockRoom.addEventListener("click", () => session?.send({ type: "lock", locked: !session.locked }));
  ui.lectureMode.addEventListener("click", () => session?.send({ type: "lecture", enabled: !session.lecture }));
  ui.chatForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.chatInput.value.trim();
    if (!text || !session) return;
    session.send({ type: "chat", text: text.slice(0, 1000) });
    ui.chatInput.value = "";
  });
}

function showForm(message = "", kind = "info", restartPreview = false) {
  setStatus("");
  ui.joinNotice.textContent = message;
  ui.joinNotice.dataset.kind = kind;
  ui.joinNotice.hidden = !message;
  if (restartPreview) preview.start();
  else preview.showStopped();
  ui.call.hidden = true;
  ui.controls.hidden = true;
  closePanel();
  ui.lockLabel.hidden = true;
  ui.lectureLabel.hidden = true;
  ui.leave.hidden = true;
  ui.roomLabel.hidden = true;
  document.getElementById("enable-sound")?.remove();
  ui.form.hidden = false;
  ui.join.disabled = false;
}

function showCall(room) {
  ui.form.hidden = true;
  ui.call.hidden = false;
  ui.leave.hidden = false;
  ui.roomLabel.textContent = t("roomCaption", { room });
  ui.roomLabel.hidden = false;
}

function markInvalid(input, invalid) {
  if (invalid) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

function onSubmit(event) {
  event.preventDefault();
  if (session) return;
  const room = ui.room.value.trim();
  const name = ui.name.value.trim();
  const roomOk = ROOM_RE.test(room);
  const nameOk = name.length >= 1 && [...name].length <= 64;
  markInvalid(ui.room, !roomOk);
  markInvalid(ui.name, !nameOk);
  if (!roomOk || !nameOk) {
    setStatus(roomOk ? t("invalidName") : t("invalidRoom"), "error");
    (roomOk ? ui.name : ui.room).focus();
    return;
  }
  try {
    localStorage.setItem(NAME_STORAGE_KEY, name);
  } catch {
    // Private browsing: the name is simply not remembered.
  }
  const url = new URL(location.href);
  url.searchParams.set("room", room);
  history.replaceState(null, "", url);
  ui.join.disabled = true;
  ui.joinNotice.hidden = true;
  const token = new URLSearchParams(location.search).get("token");
  setStatus(t("connecting"));
  preview.start().then(() => {
    if (session) return;
    showCall(room);
    session = new Session(room, name, token, preview.take());
    session.start();
  });
}

function init() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of document.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const holder of document.querySelectorAll("[data-icon]")) setIcon(holder, holder.dataset.icon);
  renderControls(null);
  wireRoomControls();
  document.title = t("appTitle");
  const params = new URLSearchParams(location.search);
  ui.room.value = params.get("room") ?? "";
  // A meeting link fixes the room: only the name is left to type.
  if (params.get("token")) {
    ui.room.readOnly = true;
    document.getElementById("room-field").hidden = true;
    document.getElementById("join-heading").textContent = t("joinMeeting", { room: ui.room.value });
  }
  try {
    ui.name.value = localStorage.getItem(NAME_STORAGE_KEY) ?? "";
  } catch {
    // Storage unavailable: leave the field empty.
  }
  ui.form.addEventListener("submit", onSubmit);
  ui.leave.addEventListener("click", () => session?.leave());
  window.addEventListener("pagehide", () => {
    session?.leave();
    preview.stop();
  });
  if (!window.RTCPeerConnection || !navigator.mediaDevices) {
    setStatus(t("unsupportedBrowser"), "error");
  }
  preview.start();
}

init();
