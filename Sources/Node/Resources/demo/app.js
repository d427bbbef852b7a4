// The demo page: join form, people list, chat, and one video tile per remote peer (call.js does the WebRTC).
// URL parameters: ?room=R&name=N fill the form, and &join=1 joins at once; &token=JWT (or window.SIGNAL_TOKEN
// from config.js) is sent in the Socket.IO CONNECT for servers started with --jwt-secret / --jwt-public-key-file.
// Tests use window.demo (see the end of this file) instead of scraping the page.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const token = params.get("token") || window.SIGNAL_TOKEN || null;
const socket = new SioSocket(`${scheme}//${location.host}/socket.io/?EIO=4&transport=websocket`, {
  auth: token ? { token } : null,
});
const logLines = [];
const chat = [];
const tiles = new Map(); // socket id -> {figure, video, label, state}

function log(text) {
  const line = `${new Date().toISOString().slice(11, 23)} ${text}`;
  logLines.push(line);
  if (logLines.length > 500) logLines.shift();
  const li = document.createElement("li");
  li.textContent = line;
  $("log").append(li);
  while ($("log").children.length > 200) $("log").firstChild.remove();
  console.log(`[demo] ${text}`);
}

const call = new Call(socket, {
  log,
  onLocalStream(stream) {
    $("local-video").srcObject = stream;
  },
  onPeer(peer) {
    tileFor(peer).label.textContent = peer.name || "…";
    render();
  },
  onPeerRemoved(peer) {
    const tile = tiles.get(peer.id);
    if (tile) {
      tile.video.srcObject = null;
      tile.figure.remove();
      tiles.delete(peer.id);
    }
    render();
  },
  onTrack(peer, stream) {
    const tile = tileFor(peer);
    if (tile.video.srcObject !== stream) tile.video.srcObject = stream;
    play(tile);
  },
  onMessage(message) {
    chat.push(message);
    const li = document.createElement("li");
    if (message.personName === call.name) li.className = "mine";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = message.personName;
    const text = document.createElement("span");
    text.textContent = typeof message.content === "string" ? message.content : JSON.stringify(message.content);
    const time = document.createElement("time");
    time.textContent = message.timestamp || "";
    li.append(who, text, time);
    $("messages").append(li);
    $("messages").scrollTop = $("messages").scrollHeight;
  },
  onJoinRefused(answer) {
    notice(`Could not join: ${answer.message || answer.code}`);
  },
  onState: render,
});

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

function tileFor(peer) {
  let tile = tiles.get(peer.id);
  if (tile) return tile;
  const figure = document.createElement("figure");
  figure.className = "tile remote";
  figure.dataset.peer = peer.id;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  const caption = document.createElement("figcaption");
  const label = document.createElement("span");
  label.className = "name";
  const state = document.createElement("span");
  state.className = "state";
  caption.append(label, state);
  figure.append(video, caption);
  $("grid").append(figure);
  tile = { figure, video, label, state, peer };
  tiles.set(peer.id, tile);
  peer.video = video;
  const firstFrame = () => {
    if (peer.firstFrameAt === null && video.videoWidth > 0) {
      peer.firstFrameAt = performance.now();
      log(`first frame from ${peer.name} (${video.videoWidth}x${video.videoHeight})`);
      render();
    }
  };
  video.addEventListener("loadeddata", firstFrame);
  video.addEventListener("resize", firstFrame);
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(firstFrame);
  return tile;
}

async function play(tile) {
  try {
    await tile.video.play();
  } catch (error) {
    if (error.name !== "NotAllowedError") return;
    // Autoplay with sound refused until the user interacts: play muted, offer to unmute.
    tile.video.muted = true;
    tile.video.play().catch(() => {});
    if (!tile.figure.querySelector(".unmute")) {
      const button = document.createElement("button");
      button.className = "unmute";
      button.textContent = "🔇 unmute";
      button.onclick = () => {
        tile.video.muted = false;
        button.remove();
      };
      tile.figure.append(button);
    }
  }
}

function render() {
  const status = $("status");
  status.className = "status " + (socket.connected ? "up" : "down");
  $("status-text").textContent = socket.connected
    ? `connected · ${socket.id}${call.room ? (call.joined ? ` · in ${call.room}` : ` · joining ${call.room}…`) : ""}`
    : socket.refusal ? `refused: ${socket.refusal}` : socket.everConnected ? "reconnecting…" : "connecting…";
  const inRoom = Boolean(call.room);
  $("join").hidden = inRoom;
  $("leave").hidden = !inRoom;
  $("room").disabled = inRoom;
  $("name").disabled = inRoom;
  $("chat-input").disabled = !inRoom;
  $("send").disabled = !inRoom;
  $("local-tile").hidden = !call.localStream;
  $("local-name").textContent = call.name ? `${call.name} (you)` : "you";
  $("empty").hidden = inRoom;

  const people = $("people");
  people.replaceChildren();
  if (inRoom) {
    const me = document.createElement("li");
    me.className = "me";
    me.textContent = `${call.name} (you)`;
    people.append(me);
  }
  for (const peer of call.peers.values()) {
    const state = peerState(peer);
    const li = document.createElement("li");
    li.dataset.peer = peer.id;
    const name = document.createElement("span");
    name.textContent = peer.name || "…";
    const badge = document.createElement("span");
    badge.className = "state";
    badge.textContent = state;
    li.append(name, badge);
    people.append(li);
    const tile = tiles.get(peer.id);
    if (tile) tile.state.textContent = state === "connected" ? "" : state;
  }
  $("count").textContent = inRoom ? `(${call.peers.size + 1})` : "";
  layout();
}

/// Columns and rows for the visible tiles: 1 → 1×1, 2 → 2×1, 3–4 → 2×2, 5–6 → 3×2, 7–9 → 3×3, …
function layout() {
  const count = [...$("grid").children].filter((tile) => !tile.hidden).length || 1;
  const cols = Math.ceil(Math.sqrt(count));
  const rows = Math.ceil(count / cols);
  $("grid").style.setProperty("--cols", cols);
  $("grid").style.setProperty("--rows", rows);
}

function peerState(peer) {
  if (!peer.pc) return "waiting";
  return peer.pc.connectionState;
}

socket.on("connect", render);
socket.on("connect_error", (error) => {
  log(`connection refused or failed: ${error.message}`);
  if (socket.refusal) {
    notice(`The server refused the connection: ${socket.refusal}`);
    render();
  }
});
socket.on("disconnect", render);
socket.on("reconnecting", ({ attempt, delay }) => {
  $("status-text").textContent = `reconnecting (attempt ${attempt}, in ${(delay / 1000).toFixed(1)} s)…`;
});

// MARK: forms

function stored(key) {
  try {
    return localStorage.getItem(key) || "";
  } catch {
    return "";
  }
}

$("room").value = params.get("room") || stored("signal-demo-room") || "lobby";
$("name").value = params.get("name") || stored("signal-demo-name") || "";

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = $("room").value.trim();
  const name = $("name").value.trim();
  if (!room || !name) return;
  try {
    localStorage.setItem("signal-demo-room", room);
    localStorage.setItem("signal-demo-name", name);
  } catch {}
  notice("");
  call.join(room, name).catch((error) => log(`join failed: ${error.message}`));
});

$("leave").addEventListener("click", () => call.leave());

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("chat-input").value;
  if (!text.trim()) return;
  if (call.sendChat(text)) $("chat-input").value = "";
});

window.addEventListener("pagehide", () => socket.close());

render();
if (params.get("join") === "1" && $("room").value && $("name").value) $("join-form").requestSubmit();

// MARK: for tests

window.demo = {
  socket,
  call,
  chat, // messages received: {personName, content, timestamp}
  log: logLines,
  get id() {
    return socket.id;
  },
  get room() {
    return call.room;
  },
  get joined() {
    return call.joined;
  },
  get peers() {
    return call.peers; // socket id -> peer {id, name, pc, stream, …}
  },
  get pcs() {
    return Object.fromEntries([...call.peers.values()].filter((p) => p.pc).map((p) => [p.id, p.pc]));
  },
  join: (room, name) => call.join(room, name),
  leave: () => call.leave(),
  say: (text) => call.sendChat(text),
  drop: () => socket.drop(), // drop the connection as a network failure would (the page reconnects and re-joins)
  stats: () => call.stats(),
  /// Plain data for WebDriver: the peers with their names, states and tiles.
  peerList() {
    return [...call.peers.values()].map((p) => ({
      id: p.id,
      name: p.name,
      state: peerState(p),
      tile: tiles.has(p.id) && document.contains(tiles.get(p.id).figure),
      label: tiles.has(p.id) ? tiles.get(p.id).label.textContent : null,
    }));
  },
  tileCount: () => document.querySelectorAll("#grid .tile.remote").length,
  /// Milliseconds: join_room sent (after the camera was ready) → first decoded frame, per peer; and from the moment
  /// this page learned of the peer (roster, user_joined or offer) → first frame.
  timings() {
    const t = call.times;
    return [...call.peers.values()].map((p) => ({
      id: p.id,
      name: p.name,
      joinClickToFirstFrame: p.firstFrameAt !== null && t.joinClicked !== null ? p.firstFrameAt - t.joinClicked : null,
      joinSentToFirstFrame: p.firstFrameAt !== null && t.joinSent !== null ? p.firstFrameAt - t.joinSent : null,
      seenToFirstFrame: p.firstFrameAt !== null ? p.firstFrameAt - p.seenAt : null,
      seenToConnected: p.connectedAt !== null ? p.connectedAt - p.seenAt : null,
    }));
  },
};
