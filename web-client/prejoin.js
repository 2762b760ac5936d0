// The pre-join screen's media: a live camera preview, a microphone level
// meter and the device lists. The stream it opens is handed to the meeting
// on Join (take()), so the browser asks for the camera only once.

const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 } };
const NONE = "none"; // the "no camera" / "no microphone" choice
const LEVEL_INTERVAL_MS = 100;

// Why a device could not be opened, from a getUserMedia error's name.
export function failureKind(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "denied";
    case "NotFoundError":
    case "OverconstrainedError":
      return "missing";
    case "NotReadableError":
    case "AbortError":
      return "busy";
    default:
      return "failed";
  }
}

async function open(kind, deviceId) {
  const constraints = kind === "video" ? { ...VIDEO } : {};
  if (deviceId) constraints.deviceId = { exact: deviceId };
  const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraints });
  return stream.getTracks().find((track) => track.kind === kind) ?? null;
}

export class Preview {
  // els: {video, cameraSelect, micSelect, level, notice, retry, avatar};
  // t: translator.
  constructor(els, t) {
    this.els = els;
    this.t = t;
    this.stream = null;
    this.problems = { audio: null, video: null }; // kind -> failure kind | "off" | null
    this.audioContext = null;
    this.levelTimer = null;
    this.starting = null;
    els.cameraSelect.addEventListener("change", () => this.choose("video", els.cameraSelect.value));
    els.micSelect.addEventListener("change", () => this.choose("audio", els.micSelect.value));
    els.retry.addEventListener("click", () => {
      this.stop();
      this.start();
    });
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this.listDevices());
    // Browsers start audio contexts suspended until the user touches the page.
    const resume = () => this.audioContext?.resume().catch(() => {});
    document.addEventListener("pointerdown", resume);
    document.addEventListener("keydown", resume);
  }

  get active() {
    return this.stream !== null;
  }

  // Opens camera and microphone together (one permission prompt), else each
  // alone to learn which one is refused or missing.
  start() {
    if (this.stream) return Promise.resolve();
    if (!this.starting) this.starting = this.open().finally(() => { this.starting = null; });
    return this.starting;
  }

  async open() {
    const stream = new MediaStream();
    this.problems = { audio: null, video: null };
    if (!navigator.mediaDevices?.getUserMedia) {
      this.problems = { audio: "failed", video: "failed" };
    } else {
      try {
        const both = await navigator.mediaDevices.getUserMedia({ audio: true, video: VIDEO });
        for (const track of both.getTracks()) stream.addTrack(track);
      } catch {
        for (const kind of ["audio", "video"]) {
          try {
            const track = await open(kind, null);
            if (track) stream.addTrack(track);
          } catch (err) {
            this.problems[kind] = failureKind(err);
          }
        }
      }
    }
    this.stream = stream;
    this.show();
    await this.listDevices();
  }

  // Switches one kind to another device ("none": no device of that kind).
  async choose(kind, deviceId) {
    if (!this.stream) return;
    for (const track of this.stream.getTracks().filter((each) => each.kind === kind)) {
      track.stop();
      this.stream.removeTrack(track);
    }
    this.problems[kind] = deviceId === NONE ? "off" : null;
    if (deviceId !== NONE) {
      try {
        const track = await open(kind, deviceId);
        if (track && this.stream) this.stream.addTrack(track);
      } catch (err) {
        this.problems[kind] = failureKind(err);
      }
    }
    this.show();
  }

  // Puts the stream on the preview, restarts the level meter, says what is missing.
  show() {
    const { video, avatar } = this.els;
    const hasVideo = Boolean(this.stream?.getVideoTracks().length);
    video.srcObject = hasVideo ? this.stream : null;
    video.hidden = !hasVideo;
    avatar.hidden = hasVideo;
    if (hasVideo) video.play().catch(() => {});
    this.meter();
    this.explain();
  }

  explain() {
    const { notice, retry } = this.els;
    const { audio, video } = this.problems;
    const lines = [];
    if (video && video !== "off" && video === audio) {
      lines.push(this.t(`media.both_${video}`)); // one reason for both: one sentence
    } else {
      if (video && video !== "off") lines.push(this.t(`media.cam_${video}`));
      if (audio && audio !== "off") lines.push(this.t(`media.mic_${audio}`));
    }
    const hasAudio = Boolean(this.stream?.getAudioTracks().length);
    const hasVideo = Boolean(this.stream?.getVideoTracks().length);
    if (lines.length) {
      if (hasAudio) lines.push(this.t("media.joinAudioOnly"));
      else if (hasVideo) lines.push(this.t("media.joinVideoOnly"));
      else lines.push(this.t("media.joinWithout"));
    }
    retry.textContent = this.t("media.retry");
    notice.textContent = lines.join(" ");
    notice.hidden = lines.length === 0;
    retry.hidden = !["denied", "busy", "failed"].includes(audio)
      && !["denied", "busy", "failed"].includes(video);
  }

  async listDevices() {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    let devices = [];
    try {
      devices = await navigator.mediaDevices.enumerateDevices();
    } catch {
      return;
    }
    const fill = (select, kind, deviceKind, noneLabel, nameKey) => {
      const current = this.stream?.getTracks().find((track) => track.kind === kind);
      const currentId = current?.getSettings().deviceId ?? NONE;
      const options = devices
        .filter((device) => device.kind === deviceKind && device.deviceId)
        .map((device, i) => new Option(device.label || this.t(nameKey, { n: i + 1 }), device.deviceId));
      options.push(new Option(noneLabel, NONE));
      select.replaceChildren(...options);
      select.value = options.some((option) => option.value === currentId) ? currentId : NONE;
    };
    fill(this.els.cameraSelect, "video", "videoinput", this.t("media.noCamera"), "media.cameraN");
    fill(this.els.micSelect, "audio", "audioinput", this.t("media.noMic"), "media.micN");
  }

  // A level meter driven by an analyser: the user sees the microphone works.
  meter() {
    clearInterval(this.levelTimer);
    this.levelTimer = null;
    this.els.level.value = 0;
    const track = this.stream?.getAudioTracks()[0];
    this.els.level.parentElement.hidden = !track; // no microphone, no meter
    if (!track || !window.AudioContext) return;
    this.audioContext ??= new AudioContext();
    this.source?.disconnect();
    this.source = this.audioContext.createMediaStreamSource(new MediaStream([track]));
    const analyser = this.audioContext.createAnalyser();
    analyser.fftSize = 512;
    this.source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    this.levelTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const sample of samples) sum += sample * sample;
      const rms = Math.sqrt(sum / samples.length);
      // Speech sits around 0.02-0.3 RMS: a square-root scale makes it visible.
      this.els.level.value = Math.min(1, Math.sqrt(rms * 4));
    }, LEVEL_INTERVAL_MS);
  }

  // Hands the stream over (the meeting now owns its tracks).
  take() {
    const stream = this.stream;
    this.release();
    return stream;
  }

  release() {
    clearInterval(this.levelTimer);
    this.levelTimer = null;
    this.source?.disconnect();
    this.source = null;
    this.els.level.value = 0;
    this.els.video.srcObject = null;
    this.stream = null;
  }

  // After leaving: the camera stays off until the user asks for it again.
  showStopped() {
    if (this.stream || this.starting) return;
    const { notice, retry, video, avatar } = this.els;
    video.hidden = true;
    avatar.hidden = false;
    notice.textContent = this.t("media.stopped");
    notice.hidden = false;
    retry.textContent = this.t("media.restart");
    retry.hidden = false;
  }

  // Stops the camera and microphone (leaving the page, or starting over).
  stop() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.release();
  }
}
