// The review page of `sow-qwen3 review`: no framework, no build step.
//
// The page keeps the song's times being edited (state.times) and an undo/redo
// history of them. Every change is judged by the review server
// (POST /api/songs/NAME/judge) with the contract's rules; the page only shows
// the flags, voiced fractions and verdict it answers, and decides none.
"use strict";

const NUDGE_SMALL = 0.1;
const NUDGE_LARGE = 0.5;
const TIMING_FLAGS = ["unvoiced", "zero_length", "collapsed"];  // drawn red
const MODEL_FLAGS = ["repaired", "low_confidence", "clamped"];  // drawn orange
const COLOURS = {
  clean: "#2e9d5b", model: "#e39b22", timing: "#d64541", unknown: "#8a94a6",
  voiced: "rgba(46, 157, 91, 0.16)", wave: "#5b6b88", playhead: "#d64541", proposal: "#7b5cd6",
  grid: "#e3e7ee", text: "#4a5568", selected: "#1a202c",
};
const WAVE_HEIGHT = 120;
const LANE_TOP = 132;
const LANE_HEIGHT = 30;
const PROPOSAL_TOP = LANE_TOP + LANE_HEIGHT + 8;
const AXIS_TOP = PROPOSAL_TOP + LANE_HEIGHT + 6;
const CANVAS_HEIGHT = AXIS_TOP + 20;

const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);

const state = {
  songs: [],
  song: null,           // the last judged view of the open song (GET /api/songs/NAME shape)
  envelope: null,       // {seconds_per_bin, peaks}
  times: [],            // [{start, end}] being edited; end null for an LRC song
  savedTimes: [],       // the times as last saved
  undo: [],
  redo: [],
  first: 0,             // the selection: lines first..last
  last: 0,
  anchor: 0,            // where a Shift selection started
  cursor: 0,            // the line the arrow keys move from
  proposal: null,       // the re-align answer on show
  view: {from: 0, to: 1},
  drag: null,           // {index, grabOffset, start} while a bar is dragged
  judgeSeq: 0,
  busy: false,
};

// ------------------------------------------------------------------ API

async function api(method, path, body) {
  const options = {method, headers: {"Authorization": "Bearer " + token}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (error) {
    throw new Error(`HTTP ${response.status}: ${text.slice(0, 200)}`);
  }
  if (!response.ok) {
    throw new Error((data && data.error) || `HTTP ${response.status}`);
  }
  return data;
}

const songPath = (name) => "/api/songs/" + encodeURIComponent(name);

// ------------------------------------------------------------------ messages

function showMessage(text, kind = "error") {
  $("message-text").textContent = text;
  $("message").className = "message " + kind;
  $("message").hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
}

// ------------------------------------------------------------------ settings

function setting(id, fallback) {
  const value = parseFloat($(id).value);
  return Number.isFinite(value) && value >= 0 ? value : fallback;
}

function loadSettings() {
  for (const id of ["lead-in", "reaction"]) {
    const kept = localStorage.getItem("sow-qwen3-review." + id);
    if (kept !== null) $(id).value = kept;
    $(id).addEventListener("change", () => localStorage.setItem("sow-qwen3-review." + id, $(id).value));
  }
}

// ------------------------------------------------------------------ queue

async function refreshQueue() {
  try {
    state.songs = await api("GET", "/api/songs");
  } catch (error) {
    showMessage("Cannot list the songs: " + error.message);
    return;
  }
  renderQueue();
  if (state.songs.some((song) => !song.loaded && !song.error)) {
    setTimeout(refreshQueue, 3000);  // verdicts of songs still loading in the background
  }
}

function renderQueue() {
  const search = $("queue-search").value.trim().toLowerCase();
  const shown = $("queue-verdict").value;
  const list = $("queue");
  list.replaceChildren();
  for (const song of state.songs) {
    if (search && !song.name.toLowerCase().includes(search)) continue;
    if (shown === "unreviewed" ? song.reviewed : shown !== "all" && song.verdict !== shown) continue;
    const item = document.createElement("li");
    item.dataset.name = song.name;
    item.className = "queue-item" + (state.song && state.song.name === song.name ? " open" : "");
    const badge = document.createElement("span");
    badge.className = "badge " + (song.verdict || "unknown");
    badge.textContent = song.error ? "error" : song.verdict || "…";
    const name = document.createElement("span");
    name.className = "queue-name";
    name.textContent = song.name;
    name.title = song.error || song.name;
    const detail = document.createElement("span");
    detail.className = "queue-detail";
    const flagged = song.flagged_lines === null || song.flagged_lines === undefined ? "" : `${song.flagged_lines} flagged`;
    detail.textContent = flagged + (song.reviewed ? " · ✓ reviewed" : "");
    item.append(badge, name, detail);
    item.addEventListener("click", () => openSong(song.name));
    list.append(item);
  }
}

// ------------------------------------------------------------------ opening a song

function dirty() {
  return state.times.some((time, index) => !sameTime(time, state.savedTimes[index]));
}

function sameTime(a, b) {
  return Math.abs(a.start - b.start) < 0.0005 && (a.end === null || Math.abs(a.end - b.end) < 0.0005);
}

async function openSong(name) {
  if (state.song && state.song.name === name) return;
  if (dirty() && !confirm("This song has unsaved changes. Leave it and lose them?")) return;
  hideMessage();
  $("song-title").textContent = name + " (loading…)";
  let song, envelope;
  try {
    [song, envelope] = await Promise.all([api("GET", songPath(name)), api("GET", songPath(name) + "/envelope")]);
  } catch (error) {
    $("song-title").textContent = name;
    showMessage(error.message);
    return;
  }
  state.song = song;
  state.envelope = envelope;
  state.times = song.lines.map((line) => ({start: line.start, end: song.kind === "json" ? line.end : null}));
  state.savedTimes = state.times.map((time) => ({...time}));
  state.undo = [];
  state.redo = [];
  state.proposal = null;
  state.first = state.last = state.anchor = state.cursor = firstFlagged(song);
  state.view = {from: 0, to: song.duration_seconds};
  history.replaceState(null, "", location.pathname + location.search + "#song=" + encodeURIComponent(name));
  $("player").src = songPath(name) + "/audio?token=" + encodeURIComponent(token);
  $("song-title").textContent = name;
  $("vad-note").hidden = !song.vad_note;
  $("vad-note").textContent = song.vad_note || "";
  renderAll();
  renderQueue();
  scrollToSelection();
}

function firstFlagged(song) {
  const index = song.lines.findIndex((line) => line.flagged);
  return index < 0 ? 0 : index;
}

// ------------------------------------------------------------------ changes, undo, redo

function copyTimes(times) {
  return times.map((time) => ({...time}));
}

// Make `times` the song's times: one step of the undo history.
function change(times, replayIndex = null) {
  state.undo.push(copyTimes(state.times));
  state.redo = [];
  state.times = times;
  afterChange();
  if (replayIndex !== null) playLine(replayIndex);
}

function undo() {
  if (!state.undo.length) return;
  state.redo.push(copyTimes(state.times));
  state.times = state.undo.pop();
  afterChange();
}

function redo() {
  if (!state.redo.length) return;
  state.undo.push(copyTimes(state.times));
  state.times = state.redo.pop();
  afterChange();
}

function afterChange() {
  renderAll();
  judge();
}

// The body of PUT and POST .../judge: every line's times.
function linesBody() {
  return state.times.map((time, index) =>
    time.end === null ? {index, start: round3(time.start)} : {index, start: round3(time.start), end: round3(time.end)});
}

function round3(value) {
  return Math.round(value * 1000) / 1000;
}

async function judge() {
  const seq = ++state.judgeSeq;
  const name = state.song.name;
  try {
    const judged = await api("POST", songPath(name) + "/judge", {lines: linesBody()});
    if (seq === state.judgeSeq && state.song && state.song.name === name) {
      state.song = judged;
      renderAll();
    }
  } catch (error) {
    if (seq === state.judgeSeq) showMessage("Cannot judge the change: " + error.message);
  }
}

// Line `index` moved to `start` (its end moves with it), kept between its neighbours' starts.
function moved(times, index, start) {
  const duration = state.song.duration_seconds;
  const low = index > 0 ? times[index - 1].start : 0;
  const high = index + 1 < times.length ? times[index + 1].start : duration;
  return placed(times, index, Math.min(Math.max(start, low), high));
}

function placed(times, index, start) {
  const next = copyTimes(times);
  const old = next[index];
  const duration = state.song.duration_seconds;
  next[index] = {start, end: old.end === null ? null : Math.min(duration, start + (old.end - old.start))};
  return next;
}

function nudge(delta) {
  const index = state.first;
  const times = moved(state.times, index, state.times[index].start + delta);
  if (sameTime(times[index], state.times[index])) {
    showMessage("The line cannot move further: it would pass its neighbour.", "info");
    return;
  }
  change(times, index);
}

// Tap: the selected line starts at the playback position less the reaction delay; the next line is selected.
// Lines around it that would be out of order are moved to the same start (the next taps fix them).
function tap() {
  const player = $("player");
  const index = state.first;
  const start = Math.max(0, Math.min(state.song.duration_seconds, player.currentTime - setting("reaction", 0)));
  let times = placed(state.times, index, start);
  for (let i = index + 1; i < times.length && times[i].start < start; i++) times = placed(times, i, start);
  for (let i = index - 1; i >= 0 && times[i].start > start; i--) times = placed(times, i, start);
  change(times);
  select(Math.min(index + 1, times.length - 1));
}

function shiftFromSelected() {
  const offset = parseFloat($("offset").value);
  if (!Number.isFinite(offset) || offset === 0) {
    showMessage("Enter a non-zero offset in seconds to shift by.", "info");
    $("offset").focus();
    return;
  }
  const index = state.first;
  const duration = state.song.duration_seconds;
  const low = index > 0 ? state.times[index - 1].start : 0;
  if (state.times[index].start + offset < low) {
    showMessage(`Cannot shift by ${offset} s: line ${index} would start before line ${index - 1 < 0 ? "0 s" : index - 1}.`);
    return;
  }
  let times = state.times;
  for (let i = index; i < times.length; i++) times = placed(times, i, Math.min(duration, times[i].start + offset));
  change(times, index);
}

// ------------------------------------------------------------------ selection and playback

function select(index, extend = false) {
  const count = state.times.length;
  index = Math.max(0, Math.min(count - 1, index));
  state.cursor = index;
  if (extend) {
    state.first = Math.min(state.anchor, index);
    state.last = Math.max(state.anchor, index);
  } else {
    state.first = state.last = state.anchor = index;
  }
  keepInView(state.times[index].start);
  renderAll();
  scrollToSelection();
}

function playFrom(seconds) {
  const player = $("player");
  player.currentTime = Math.max(0, seconds);
  const playing = player.play();
  if (playing) playing.catch((error) => showMessage("The browser did not play the audio: " + error.message, "info"));
}

function playLine(index) {
  playFrom(state.times[index].start - setting("lead-in", 1.5));
}

function togglePlay() {
  const player = $("player");
  if (player.paused) playFrom(player.currentTime);
  else player.pause();
}

// ------------------------------------------------------------------ re-align

// The lines to re-align: the selection, or a single flagged line's whole run of flagged neighbours.
function realignSpan() {
  let first = state.first, last = state.last;
  const lines = state.song.lines;
  if (first === last && lines[first].flagged) {
    while (first > 0 && lines[first - 1].flagged) first--;
    while (last + 1 < lines.length && lines[last + 1].flagged) last++;
  }
  return [first, last];
}

async function realign() {
  if (state.busy) return;
  const [first, last] = realignSpan();
  state.busy = true;
  $("realign").disabled = true;
  $("realign").textContent = "Re-aligning…";
  try {
    const proposal = await api("POST", songPath(state.song.name) + "/realign", {first, last, lines: linesBody()});
    state.proposal = proposal;
    state.first = state.anchor = first;
    state.last = state.cursor = last;
    hideMessage();
  } catch (error) {
    showMessage(error.message);
  } finally {
    state.busy = false;
    $("realign").disabled = false;
    $("realign").textContent = "Re-align";
    renderAll();
  }
}

function acceptProposal() {
  const proposal = state.proposal;
  if (!proposal) return;
  const times = copyTimes(state.times);
  for (const line of proposal.lines) {
    times[line.index] = {start: line.start, end: times[line.index].end === null ? null : line.end};
  }
  state.proposal = null;
  change(times);
}

function rejectProposal() {
  state.proposal = null;
  renderAll();
}

// ------------------------------------------------------------------ save

async function save() {
  if (!state.song || state.busy) return;
  state.busy = true;
  $("save").disabled = true;
  $("save-state").textContent = "saving…";
  try {
    const saved = await api("PUT", songPath(state.song.name), {lines: linesBody()});
    state.song = saved;
    state.savedTimes = copyTimes(state.times);
    hideMessage();
    $("save-state").textContent = "saved";
    refreshQueue();
  } catch (error) {
    showMessage("Not saved: " + error.message);
  } finally {
    state.busy = false;
    renderAll();
  }
}

// ------------------------------------------------------------------ rendering

function renderAll() {
  if (!state.song) return;
  renderHeader();
  renderLines();
  renderProposal();
  drawTimeline();
}

function fixed(value, digits = 2) {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

function clock(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - minutes * 60).toFixed(2).padStart(5, "0")}`;
}

function renderHeader() {
  const song = state.song;
  const verdict = $("verdict");
  verdict.className = "verdict badge " + song.verdict;
  verdict.textContent = song.verdict;
  const mean = song.mean_voiced_fraction === null ? "not measured" : song.mean_voiced_fraction.toFixed(2);
  $("stats").textContent = `${song.flagged_lines} of ${song.lines.length} lines flagged · mean voiced ${mean}`;
  const unsaved = dirty();
  $("undo").disabled = !state.undo.length;
  $("redo").disabled = !state.redo.length;
  $("save").disabled = state.busy || !unsaved;
  if (unsaved) $("save-state").textContent = "unsaved changes";
  else if ($("save-state").textContent === "unsaved changes") $("save-state").textContent = "";
}

function flagChips(flags) {
  const cell = document.createElement("td");
  cell.className = "flags";
  for (const flag of flags) {
    const chip = document.createElement("span");
    chip.className = "chip " + flagKind([flag]);
    chip.textContent = flag.replace("_", " ");
    cell.append(chip);
  }
  return cell;
}

function cell(text, className = "") {
  const element = document.createElement("td");
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

function renderLines() {
  const body = $("line-rows");
  body.replaceChildren();
  state.song.lines.forEach((line, index) => {
    const time = state.times[index];
    const row = document.createElement("tr");
    row.dataset.index = index;
    row.dataset.start = time.start.toFixed(3);
    if (time.end !== null) row.dataset.end = time.end.toFixed(3);
    const edited = !sameTime(time, state.savedTimes[index]) || line.edited;
    row.className = [line.flagged ? "flagged" : "", edited ? "edited" : "",
                     index >= state.first && index <= state.last ? "selected" : ""].join(" ").trim();
    const end = time.end !== null ? time.end : line.end;
    row.append(cell(String(index), "num"), cell(clock(time.start), "time start"), cell(clock(end), "time"),
               cell(fixed(line.voiced_fraction), "num"), cell(fixed(line.confidence), "num"), flagChips(line.flags),
               cell(line.text, "text"));
    row.addEventListener("click", (event) => {
      select(index, event.shiftKey);
      if (!event.shiftKey) playLine(index);
    });
    body.append(row);
  });
}

function renderProposal() {
  const proposal = state.proposal;
  $("proposal").hidden = !proposal;
  if (!proposal) return;
  $("proposal-summary").textContent =
    `lines ${proposal.first}–${proposal.last}, audio ${clock(proposal.low)}–${clock(proposal.high)}; ` +
    `with it the song would be ${proposal.verdict} (${proposal.flagged_lines} flagged)`;
  const body = $("proposal-lines");
  body.replaceChildren();
  for (const line of proposal.lines) {
    const row = document.createElement("tr");
    row.dataset.index = line.index;
    row.dataset.start = line.start.toFixed(3);
    const delta = line.start - state.times[line.index].start;
    row.append(cell(String(line.index), "num"), cell(clock(state.times[line.index].start), "time"),
               cell(`${clock(line.start)} (${delta >= 0 ? "+" : ""}${delta.toFixed(2)})`, "time"),
               cell(fixed(line.voiced_fraction), "num"), cell(fixed(line.confidence), "num"), flagChips(line.flags),
               cell(line.text, "text"));
    body.append(row);
  }
}

function scrollToSelection() {
  const row = $("line-rows").querySelector(`tr[data-index="${state.first}"]`);
  if (row) row.scrollIntoView({block: "nearest"});
}

// ------------------------------------------------------------------ the timeline

function flagKind(flags) {
  if (flags.some((flag) => TIMING_FLAGS.includes(flag))) return "timing";
  if (flags.some((flag) => MODEL_FLAGS.includes(flag))) return "model";
  if (flags.length) return "unknown";
  return "clean";
}

function canvasSize() {
  const canvas = $("timeline");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(CANVAS_HEIGHT * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(CANVAS_HEIGHT * ratio);
  }
  return {canvas, ratio, width};
}

const xOf = (seconds, width) => (seconds - state.view.from) / (state.view.to - state.view.from) * width;
const timeOf = (x, width) => state.view.from + x / width * (state.view.to - state.view.from);

// Where line `index`'s bar ends: its end (JSON), else its judged window's length from its current start.
function barEnd(index) {
  const time = state.times[index];
  if (time.end !== null) return time.end;
  const line = state.song.lines[index];
  return time.start + Math.max(0.05, line.end - line.start);
}

function drawTimeline() {
  if (!state.song) return;
  const {canvas, ratio, width} = canvasSize();
  const context = canvas.getContext("2d");
  context.setTransform(ratio, 0, 0, ratio, 0, 0);
  context.clearRect(0, 0, width, CANVAS_HEIGHT);
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, width, CANVAS_HEIGHT);
  for (const [start, end] of state.song.voiced) {
    context.fillStyle = COLOURS.voiced;
    context.fillRect(xOf(start, width), 0, Math.max(1, xOf(end, width) - xOf(start, width)), WAVE_HEIGHT);
  }
  drawWave(context, width);
  drawAxis(context, width);
  drawBars(context, width);
  drawPlayhead(context, width);
}

function drawWave(context, width) {
  const envelope = state.envelope;
  if (!envelope) return;
  const middle = WAVE_HEIGHT / 2;
  const peaks = envelope.peaks;
  const loudest = Math.max(0.05, ...peaks);
  context.fillStyle = COLOURS.wave;
  for (let x = 0; x < width; x++) {
    const from = Math.floor(timeOf(x, width) / envelope.seconds_per_bin);
    const to = Math.max(from + 1, Math.floor(timeOf(x + 1, width) / envelope.seconds_per_bin));
    let peak = 0;
    for (let bin = Math.max(0, from); bin < Math.min(peaks.length, to); bin++) peak = Math.max(peak, peaks[bin]);
    const height = peak / loudest * (middle - 4);
    context.fillRect(x, middle - height, 1, Math.max(1, height * 2));
  }
}

function drawAxis(context, width) {
  const span = state.view.to - state.view.from;
  const step = [0.5, 1, 2, 5, 10, 15, 30, 60].find((candidate) => width / (span / candidate) >= 70) || 120;
  context.font = "11px system-ui, sans-serif";
  context.textBaseline = "top";
  for (let tick = Math.ceil(state.view.from / step) * step; tick <= state.view.to; tick += step) {
    const x = Math.round(xOf(tick, width)) + 0.5;
    context.strokeStyle = COLOURS.grid;
    context.beginPath();
    context.moveTo(x, 0);
    context.lineTo(x, AXIS_TOP);
    context.stroke();
    context.fillStyle = COLOURS.text;
    context.fillText(clock(tick).replace(/\.00$/, ""), x + 3, AXIS_TOP + 4);
  }
}

function drawBars(context, width) {
  context.font = "11px system-ui, sans-serif";
  context.textBaseline = "middle";
  state.song.lines.forEach((line, index) => {
    const start = state.drag && state.drag.index === index ? state.drag.start : state.times[index].start;
    const end = barEnd(index) + (start - state.times[index].start);
    const x = xOf(start, width);
    const barWidth = Math.max(3, xOf(end, width) - x);
    context.fillStyle = COLOURS[flagKind(line.flags)];
    context.fillRect(x, LANE_TOP, barWidth, LANE_HEIGHT);
    if (index >= state.first && index <= state.last) {
      context.lineWidth = 2;
      context.strokeStyle = COLOURS.selected;
      context.strokeRect(x + 1, LANE_TOP + 1, barWidth - 2, LANE_HEIGHT - 2);
    }
    if (barWidth > 18) {
      context.fillStyle = "#ffffff";
      context.fillText(String(index), x + 4, LANE_TOP + LANE_HEIGHT / 2);
    }
  });
  if (state.proposal) {
    context.setLineDash([4, 3]);
    context.lineWidth = 1.5;
    for (const line of state.proposal.lines) {
      const x = xOf(line.start, width);
      const barWidth = Math.max(3, xOf(line.end, width) - x);
      context.fillStyle = "rgba(123, 92, 214, 0.25)";
      context.fillRect(x, PROPOSAL_TOP, barWidth, LANE_HEIGHT);
      context.strokeStyle = COLOURS.proposal;
      context.strokeRect(x, PROPOSAL_TOP, barWidth, LANE_HEIGHT);
    }
    context.setLineDash([]);
  }
}

function drawPlayhead(context, width) {
  const x = xOf($("player").currentTime || 0, width);
  if (x < 0 || x > width) return;
  context.fillStyle = COLOURS.playhead;
  context.fillRect(Math.round(x), 0, 2, AXIS_TOP);
}

function keepInView(seconds) {
  const span = state.view.to - state.view.from;
  if (seconds < state.view.from || seconds > state.view.to) setView(seconds - span / 4, seconds + span * 3 / 4);
}

function setView(from, to) {
  const duration = state.song.duration_seconds;
  const span = Math.min(duration, Math.max(2, to - from));
  from = Math.max(0, Math.min(duration - span, from));
  state.view = {from, to: from + span};
  drawTimeline();
}

function zoom(factor, centre) {
  const {from, to} = state.view;
  centre = centre === undefined ? (from + to) / 2 : centre;
  setView(centre - (centre - from) * factor, centre + (to - centre) * factor);
}

function barAt(x, y, width) {
  if (y < LANE_TOP || y > LANE_TOP + LANE_HEIGHT) return -1;
  for (let index = state.times.length - 1; index >= 0; index--) {
    const left = xOf(state.times[index].start, width);
    if (x >= left - 2 && x <= Math.max(left + 3, xOf(barEnd(index), width)) + 2) return index;
  }
  return -1;
}

function setUpTimeline() {
  const canvas = $("timeline");
  canvas.addEventListener("mousedown", (event) => {
    if (!state.song) return;
    const width = canvas.clientWidth;
    const index = barAt(event.offsetX, event.offsetY, width);
    if (index < 0) {
      $("player").currentTime = Math.max(0, timeOf(event.offsetX, width));
      drawTimeline();
      return;
    }
    select(index, event.shiftKey);
    state.drag = {index, grab: timeOf(event.offsetX, width) - state.times[index].start,
                  start: state.times[index].start, moved: false};
  });
  window.addEventListener("mousemove", (event) => {
    const drag = state.drag;
    if (!drag) return;
    const rect = canvas.getBoundingClientRect();
    const wanted = timeOf(event.clientX - rect.left, rect.width) - drag.grab;
    drag.start = moved(state.times, drag.index, wanted)[drag.index].start;
    drag.moved = drag.moved || Math.abs(drag.start - state.times[drag.index].start) > 0.005;
    drawTimeline();
  });
  window.addEventListener("mouseup", () => {
    const drag = state.drag;
    if (!drag) return;
    state.drag = null;
    if (drag.moved) change(moved(state.times, drag.index, drag.start), drag.index);
    else drawTimeline();
  });
  canvas.addEventListener("wheel", (event) => {
    if (!state.song) return;
    event.preventDefault();
    const width = canvas.clientWidth;
    if (event.shiftKey || Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
      const span = state.view.to - state.view.from;
      const delta = (event.shiftKey ? event.deltaY : event.deltaX) / width * span;
      setView(state.view.from + delta, state.view.to + delta);
    } else {
      zoom(event.deltaY > 0 ? 1.25 : 0.8, timeOf(event.offsetX, width));
    }
  }, {passive: false});
  window.addEventListener("resize", drawTimeline);
}

function animate() {
  drawTimeline();
  if (!$("player").paused) requestAnimationFrame(animate);
}

// ------------------------------------------------------------------ keyboard

function typing(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
}

function onKey(event) {
  if (!state.song) return;
  const key = event.key;
  const command = event.ctrlKey || event.metaKey;
  if (command && key.toLowerCase() === "s") {
    event.preventDefault();
    save();
    return;
  }
  if (typing(event.target)) {
    if (key === "Enter" && event.target === $("offset")) shiftFromSelected();
    if (key === "Escape") event.target.blur();
    return;
  }
  if (command && key.toLowerCase() === "z") {
    event.preventDefault();
    if (event.shiftKey) redo(); else undo();
    return;
  }
  if (command && key.toLowerCase() === "y") {
    event.preventDefault();
    redo();
    return;
  }
  if (command || event.altKey) return;
  const actions = {
    "ArrowDown": () => select(state.cursor + 1, event.shiftKey),
    "ArrowUp": () => select(state.cursor - 1, event.shiftKey),
    "ArrowLeft": () => nudge(event.shiftKey ? -NUDGE_LARGE : -NUDGE_SMALL),
    "ArrowRight": () => nudge(event.shiftKey ? NUDGE_LARGE : NUDGE_SMALL),
    "Enter": () => (state.proposal ? acceptProposal() : playLine(state.first)),
    "Escape": () => rejectProposal(),
    " ": () => togglePlay(),
    "t": () => tap(),
    "r": () => realign(),
    "o": () => $("offset").focus(),
    "+": () => zoom(0.5),
    "=": () => zoom(0.5),
    "-": () => zoom(2),
    "0": () => setView(0, state.song.duration_seconds),
  };
  const action = actions[key.length === 1 ? key.toLowerCase() : key];
  if (action) {
    event.preventDefault();
    action();
  }
}

// ------------------------------------------------------------------ start

function start() {
  loadSettings();
  setUpTimeline();
  document.addEventListener("keydown", onKey);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("save").addEventListener("click", save);
  $("shift").addEventListener("click", shiftFromSelected);
  $("realign").addEventListener("click", realign);
  $("accept").addEventListener("click", acceptProposal);
  $("reject").addEventListener("click", rejectProposal);
  $("message-close").addEventListener("click", hideMessage);
  $("queue-search").addEventListener("input", renderQueue);
  $("queue-verdict").addEventListener("change", renderQueue);
  const player = $("player");
  player.addEventListener("play", animate);
  player.addEventListener("seeked", drawTimeline);
  player.addEventListener("timeupdate", () => { if (player.paused) drawTimeline(); });
  player.addEventListener("error", () => showMessage("The audio cannot be played in this browser."));
  window.addEventListener("beforeunload", (event) => {
    if (dirty()) {
      event.preventDefault();
      event.returnValue = "";
    }
  });
  if (!token) {
    showMessage("This page needs the token in its URL: open the URL that sow-qwen3 review printed.");
    return;
  }
  refreshQueue().then(() => {
    const wanted = new URLSearchParams(location.hash.slice(1)).get("song");
    const first = state.songs.find((song) => song.name === wanted) || state.songs[0];
    if (first) openSong(first.name);
  });
}

start();
