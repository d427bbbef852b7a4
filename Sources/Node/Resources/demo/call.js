// The call: one RTCPeerConnection per remote member of the room (a full mesh), signaled with the seed's events.
//
// What the seed's client got wrong, and what this does instead (shared/notes/seed-protocol.md §3–4):
// - Who offers: the newcomer. The join_room ack lists the members already present; the newcomer creates a
//   connection for each and offers. Existing members learn of the newcomer from user_joined and wait for its offer
//   (and offer themselves after OFFER_FALLBACK_MS if none came, e.g. from a seed client, which never offers).
// - Glare: perfect negotiation. Each side compares socket ids: the greater id is polite (it rolls back its own offer
//   when offers cross), the smaller one ignores the crossing offer.
// - ICE candidates that arrive before the remote description (or before the connection exists) are queued and
//   added once the remote description is set. Each candidate is added once, whether it comes as `ice_candidate`
//   or `ice-candidate` (the server sends both by default).
// - user_left (a member left, disconnected, or its node died) closes that connection and removes its tile.
// - After a reconnection the socket has a new id: every connection is closed and the room joined again, which
//   makes this side the newcomer.
// Events and payloads stay the seed's: `offer {offer, fromPeer, toPeer}`, `answer {answer, fromPeer, toPeer}`,
// `ice_candidate {iccCandidate, fromPeer, toPeer}` (the server overwrites fromPeer with the real sender).
"use strict";

const OFFER_FALLBACK_MS = 4000;
const JOIN_ACK_TIMEOUT_MS = 5000;

/// The first DTLS fingerprint of an SDP (the certificate of the connection that wrote it).
function fingerprint(sdp) {
  const match = /^a=fingerprint:(.*)$/m.exec(sdp || "");
  return match ? match[1].trim().toLowerCase() : null;
}

class Call {
  constructor(socket, hooks = {}) {
    this.socket = socket;
    this.hooks = hooks; // onPeer(peer), onPeerRemoved(peer), onTrack(peer, stream), onMessage(msg), onState(), log(text)
    this.room = null;
    this.name = null;
    this.localStream = null;
    this.iceServers = []; // what the last connection made was given (see currentIceServers)
    this.serverIceServers = null; // from the server: the ice_servers event on connect, or the join ack
    this.peers = new Map(); // socket id -> peer
    this.gone = new Set(); // ids seen leaving: late signals from them are dropped
    this.sessionId = null; // the socket id this membership was made with
    this.joined = false; // the join ack (roster) arrived for the current connection
    this.times = { joinClicked: null, mediaReady: null, joinSent: null, rosterAt: null };

    socket.on("connect", () => this.connected());
    socket.on("ice_servers", (servers) => {
      if (Array.isArray(servers)) this.serverIceServers = servers;
    });
    socket.on("disconnect", (reason) => {
      this.joined = false;
      this.log(`disconnected (${reason})`);
      this.changed();
    });
    socket.on("user_joined", (p) => this.userJoined(p));
    socket.on("user_left", (p) => this.userLeft(p));
    socket.on("offer", (m) => this.signalReceived(m, m && m.offer));
    socket.on("answer", (m) => this.signalReceived(m, m && m.answer));
    socket.on("ice_candidate", (m) => this.candidateReceived(m));
    socket.on("ice-candidate", (m) => this.candidateReceived(m));
    socket.on("message", (m) => this.hooks.onMessage && this.hooks.onMessage(m));
    socket.on("error", (e) => this.log(`server refused ${e && e.event}: ${e && e.code} ${e && e.message}`));
  }

  log(text) {
    if (this.hooks.log) this.hooks.log(text);
  }

  changed() {
    if (this.hooks.onState) this.hooks.onState();
  }

  get myId() {
    return this.socket.id;
  }

  // MARK: joining

  async join(room, name) {
    if (this.room) this.leave();
    this.room = room;
    this.name = name;
    this.times = { joinClicked: performance.now(), mediaReady: null, joinSent: null, rosterAt: null };
    this.changed();
    await this.startMedia();
    if (this.room !== room) return; // left meanwhile
    this.times.mediaReady = performance.now();
    if (this.socket.connected) await this.sendJoin();
    // else: connected() joins when the socket (re)connects
  }

  async startMedia() {
    if (this.localStream) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.log("no camera API (page not served over https or localhost?): receiving only");
      return;
    }
    for (const constraints of [{ video: true, audio: true }, { video: true, audio: false }, { video: false, audio: true }]) {
      try {
        this.localStream = await navigator.mediaDevices.getUserMedia(constraints);
        if (this.hooks.onLocalStream) this.hooks.onLocalStream(this.localStream);
        return;
      } catch (error) {
        this.log(`getUserMedia(${JSON.stringify(constraints)}) failed: ${error.name}`);
      }
    }
    this.log("no camera or microphone: receiving only");
  }

  /// ICE servers (STUN/TURN), first found: those the server sends (`iceServers` in the join ack, or the
  /// `ice_servers` event after connecting; TURN credentials made for this socket), else
  /// `window.SIGNAL_ICE_SERVERS` (set by the optional `config.js`), else none (enough on one machine or a LAN).
  currentIceServers() {
    if (Array.isArray(this.serverIceServers)) return this.serverIceServers;
    if (Array.isArray(window.SIGNAL_ICE_SERVERS)) return window.SIGNAL_ICE_SERVERS;
    return [];
  }

  async sendJoin() {
    const room = this.room;
    const id = this.socket.id;
    this.times.joinSent = performance.now();
    let ack;
    try {
      ack = await this.socket.emitWithAck("join_room", { roomName: room, personName: this.name }, JOIN_ACK_TIMEOUT_MS);
    } catch (error) {
      if (!this.socket.connected || this.socket.id !== id) return; // the reconnection joins again
      // A server without the roster ack (the seed's): the members will offer to us when they see user_joined.
      this.log(`no join ack (${error.message}): waiting for offers`);
      ack = { roomName: room, socketId: id, peers: [] };
    }
    if (this.room !== room || this.socket.id !== id) return;
    if (ack && ack.code) {
      this.log(`join refused: ${ack.code} ${ack.message}`);
      this.room = null;
      if (this.hooks.onJoinRefused) this.hooks.onJoinRefused(ack);
      this.changed();
      return;
    }
    if (ack && Array.isArray(ack.iceServers)) this.serverIceServers = ack.iceServers;
    this.joined = true;
    this.sessionId = id;
    this.times.rosterAt = performance.now();
    const peers = (ack && Array.isArray(ack.peers)) ? ack.peers : [];
    this.log(`joined ${room} as ${id}; ${peers.length} already here`);
    for (const entry of peers) {
      const peer = this.ensurePeer(entry.socketId, entry.personName);
      if (!peer.pc) this.createConnection(peer, true); // the newcomer offers to everyone present
    }
    this.changed();
  }

  connected() {
    if (this.socket.recovered && this.joined === false && this.sessionId === this.socket.id && this.room) {
      // Connection state recovery: the same socket, still in the room; the peers saw nothing and what they sent
      // meanwhile is replayed now. Calls, ICE servers and the membership carry on.
      this.joined = true;
      this.log(`recovered as ${this.socket.id}`);
      this.changed();
      return;
    }
    this.serverIceServers = null; // credentials are per socket: the new one gets its own
    this.log(`connected as ${this.socket.id}${this.socket.reconnections ? " (reconnected)" : ""}`);
    // Whatever was set up before belongs to the old socket id, which the others have seen leave.
    for (const peer of [...this.peers.values()]) this.removePeer(peer.id, "reconnected");
    if (this.room && this.times.mediaReady !== null) this.sendJoin();
    this.changed();
  }

  leave() {
    if (!this.room) return;
    this.socket.emit("leave_room", { roomName: this.room, personName: this.name });
    for (const peer of [...this.peers.values()]) this.removePeer(peer.id, "left");
    this.log(`left ${this.room}`);
    this.room = null;
    this.joined = false;
    this.changed();
  }

  sendChat(content) {
    if (!this.room) return false;
    // personName too, for the seed's server (ours uses the name given at join).
    return this.socket.emit("message", { roomName: this.room, personName: this.name, content });
  }

  // MARK: membership

  ensurePeer(id, name) {
    let peer = this.peers.get(id);
    if (!peer) {
      peer = {
        id,
        name: name || "",
        pc: null,
        makingOffer: false,
        ignoreOffer: false,
        settingAnswer: false,
        pending: [], // candidates waiting for the remote description
        seen: new Set(), // candidates already handled
        chain: Promise.resolve(), // descriptions and candidates of this peer, in order
        offerTimer: null,
        stream: null,
        seenAt: performance.now(),
        firstFrameAt: null,
        connectedAt: null,
      };
      this.peers.set(id, peer);
      if (this.hooks.onPeer) this.hooks.onPeer(peer);
    } else if (name && peer.name !== name) {
      peer.name = name;
      if (this.hooks.onPeer) this.hooks.onPeer(peer);
    }
    return peer;
  }

  userJoined(p) {
    if (!p || p.roomName !== this.room || !p.socketId || p.socketId === this.myId) return;
    const peer = this.ensurePeer(p.socketId, p.personName);
    this.log(`${p.personName} joined`);
    if (!peer.pc && !peer.offerTimer) {
      // The newcomer offers; if it does not (a seed client never does), offer ourselves.
      peer.offerTimer = setTimeout(() => {
        peer.offerTimer = null;
        if (!peer.pc && this.peers.get(peer.id) === peer) {
          this.log(`no offer from ${peer.name} within ${OFFER_FALLBACK_MS} ms: offering`);
          this.createConnection(peer, true);
        }
      }, OFFER_FALLBACK_MS);
    }
    this.changed();
  }

  userLeft(p) {
    if (!p || p.roomName !== this.room || !p.socketId) return;
    if (this.peers.has(p.socketId)) this.log(`${p.personName} left`);
    this.removePeer(p.socketId, "user_left");
  }

  removePeer(id, why) {
    if (why === "user_left") this.gone.add(id);
    const peer = this.peers.get(id);
    if (!peer) return;
    this.peers.delete(id);
    clearTimeout(peer.offerTimer);
    if (peer.pc) peer.pc.close();
    peer.closed = why;
    if (this.hooks.onPeerRemoved) this.hooks.onPeerRemoved(peer);
    this.changed();
  }

  // MARK: WebRTC

  polite(peer) {
    return (this.myId || "") > peer.id;
  }

  send(event, peer, fields) {
    this.socket.emit(event, { ...fields, fromPeer: this.myId, toPeer: peer.id });
  }

  /// A connection to `peer`: as the offerer (`offer` undefined) it sends what it has and receives audio and video;
  /// as the answerer of `offer` it sends only the kinds the offer has, so that answering needs no second round
  /// (a seed client would answer a renegotiation with a new connection).
  createConnection(peer, offerer, offer) {
    clearTimeout(peer.offerTimer);
    peer.offerTimer = null;
    this.iceServers = this.currentIceServers();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    peer.pc = pc;
    if (this.localStream) {
      const offered = offer ? new Set([...offer.sdp.matchAll(/^m=(\w+) /gm)].map((m) => m[1])) : null;
      for (const track of this.localStream.getTracks()) {
        if (!offered || offered.has(track.kind)) pc.addTrack(track, this.localStream);
      }
    }
    if (offerer) {
      // Receive what we do not send (no camera, or no microphone).
      const sending = new Set(this.localStream ? this.localStream.getTracks().map((t) => t.kind) : []);
      for (const kind of ["audio", "video"]) {
        if (!sending.has(kind)) pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
    pc.onnegotiationneeded = async () => {
      try {
        peer.makingOffer = true;
        await pc.setLocalDescription();
        if (pc.signalingState === "closed") return;
        this.send("offer", peer, { offer: pc.localDescription.toJSON() });
      } catch (error) {
        this.log(`offer to ${peer.name} failed: ${error.message}`);
      } finally {
        peer.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && candidate.candidate) this.send("ice_candidate", peer, { iccCandidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track, streams }) => {
      if (!peer.stream) peer.stream = streams[0] || new MediaStream();
      if (!peer.stream.getTracks().includes(track)) peer.stream.addTrack(track);
      if (this.hooks.onTrack) this.hooks.onTrack(peer, peer.stream);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected" && peer.connectedAt === null) peer.connectedAt = performance.now();
      if (pc.connectionState === "failed") pc.restartIce();
      this.changed();
    };
    this.changed();
    return pc;
  }

  /// `offer` or `answer` from a peer (perfect negotiation).
  signalReceived(message, description) {
    if (!this.room || !message || !message.fromPeer || !description || !description.type) return;
    if (this.gone.has(message.fromPeer)) return;
    const peer = this.ensurePeer(message.fromPeer);
    peer.chain = peer.chain.then(async () => {
      if (this.peers.get(peer.id) !== peer) return;
      if (!peer.pc) {
        if (description.type !== "offer") return; // an answer for a connection we no longer have
        this.createConnection(peer, false, description);
      }
      const pc = peer.pc;
      if (description.type === "offer" && pc.remoteDescription && fingerprint(description.sdp) !== fingerprint(pc.remoteDescription.sdp)) {
        // A new DTLS certificate under the same socket id: not a renegotiation but a second connection of the
        // peer (the seed's client offers from a new connection after it already answered ours). Keep ours.
        this.log(`ignored an offer from a second connection of ${peer.name}`);
        return;
      }
      const readyForOffer = !peer.makingOffer && (pc.signalingState === "stable" || peer.settingAnswer);
      const collision = description.type === "offer" && !readyForOffer;
      peer.ignoreOffer = !this.polite(peer) && collision;
      if (peer.ignoreOffer) {
        this.log(`ignored a crossing offer from ${peer.name} (impolite)`);
        return;
      }
      peer.settingAnswer = description.type === "answer";
      try {
        await pc.setRemoteDescription(description); // a polite side rolls its own offer back implicitly
      } finally {
        peer.settingAnswer = false;
      }
      for (const candidate of peer.pending.splice(0)) await this.addCandidate(peer, candidate);
      if (description.type === "offer") {
        await pc.setLocalDescription();
        this.send("answer", peer, { answer: pc.localDescription.toJSON() });
      }
    }).catch((error) => this.log(`${description.type} from ${peer.name || peer.id} failed: ${error.message}`));
  }

  candidateReceived(message) {
    if (!this.room || !message || !message.fromPeer || this.gone.has(message.fromPeer)) return;
    const candidate = message.iccCandidate || message.candidate;
    if (!candidate || !candidate.candidate) return; // end of candidates: nothing to do
    const peer = this.ensurePeer(message.fromPeer);
    const key = `${candidate.sdpMid}|${candidate.sdpMLineIndex}|${candidate.candidate}`;
    if (peer.seen.has(key)) return; // the same candidate under the other event name
    peer.seen.add(key);
    peer.chain = peer.chain.then(async () => {
      if (!peer.pc || !peer.pc.remoteDescription) {
        peer.pending.push(candidate); // before the offer (or the answer): keep it for later
        return;
      }
      await this.addCandidate(peer, candidate);
    });
  }

  async addCandidate(peer, candidate) {
    try {
      await peer.pc.addIceCandidate(candidate);
    } catch (error) {
      if (!peer.ignoreOffer) this.log(`candidate from ${peer.name} refused: ${error.message}`);
    }
  }

  // MARK: for tests and the UI

  async stats() {
    const result = {};
    for (const peer of this.peers.values()) {
      const entry = {
        name: peer.name,
        connectionState: peer.pc ? peer.pc.connectionState : "new",
        signalingState: peer.pc ? peer.pc.signalingState : "none",
        framesDecoded: 0,
        framesReceived: 0,
        frameWidth: 0,
        frameHeight: 0,
        bytesReceived: 0,
        audioBytesReceived: 0,
        videoWidth: peer.video ? peer.video.videoWidth : 0,
        videoHeight: peer.video ? peer.video.videoHeight : 0,
        seenAt: peer.seenAt,
        connectedAt: peer.connectedAt,
        firstFrameAt: peer.firstFrameAt,
      };
      if (peer.pc) {
        const report = await peer.pc.getStats();
        report.forEach((s) => {
          if (s.type !== "inbound-rtp") return;
          if (s.kind === "video") {
            entry.framesDecoded += s.framesDecoded || 0;
            entry.framesReceived += s.framesReceived || 0;
            entry.frameWidth = Math.max(entry.frameWidth, s.frameWidth || 0);
            entry.frameHeight = Math.max(entry.frameHeight, s.frameHeight || 0);
            entry.bytesReceived += s.bytesReceived || 0;
          } else if (s.kind === "audio") {
            entry.audioBytesReceived += s.bytesReceived || 0;
          }
        });
      }
      result[peer.id] = entry;
    }
    return result;
  }
}

window.Call = Call;
