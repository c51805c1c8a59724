// The spec's example clients (TTSWebSocketClient, STTWebSocketClient), copied from
// spec/voxnexus-websocket-api.txt unchanged except for the server URL, run under Node.
//
// Node 20 has no global WebSocket: the `ws` package provides the same API.
// The STT example records with getUserMedia/ScriptProcessor, which Node lacks; the harness
// below sends audio exactly the way its onaudioprocess handler does (Float32 -> Int16 ->
// btoa(String.fromCharCode(...)) -> ws.send), using speech the TTS client just produced.
//
// Usage: VOXBEAM_URL=ws://127.0.0.1:PORT VOXBEAM_KEY=... node spec_clients.js
// Prints one JSON line with what each client saw.
globalThis.WebSocket = require('ws');
const BASE = process.env.VOXBEAM_URL;

// ---- begin spec code (URL changed) -------------------------------------------------
class TTSWebSocketClient {
constructor(apiKey) {
this.apiKey = apiKey;
this.ws = null;
this.ready = false;
}
connect() {
return new Promise((resolve, reject) => {
// Use query parameter for authentication (works with all clients)
this.ws = new WebSocket(`${BASE}/v1/tts/realtime?token=${this.apiKey}`);
this.ws.onopen = () => {
console.log('Connected');
resolve();
};
this.ws.onmessage = (event) => {
this.handleMessage(JSON.parse(event.data));
};
this.ws.onerror = (error) => {
console.error('WebSocket error:', error);
reject(error);
};
this.ws.onclose = () => {
console.log('Connection closed');
this.ready = false;
};
});
}
initialize(config) {
this.ws.send(JSON.stringify({
type: 'init',
...config
}));
}
synthesize(text, isFinal = false) {
if (!this.ready) {
throw new Error('Not ready. Wait for ready message.');
}
this.ws.send(JSON.stringify({
type: 'text',
text: text,
is_final: isFinal
}));
}
handleMessage(message) {
switch (message.type) {
case 'ready':
this.ready = true;
console.log('Ready:', message.request_id);
break;
case 'audio':
this.onAudio(message.data, message.is_final);
break;
case 'error':
console.error('Error:', message.error);
this.onError(message);
break;
}
}
onAudio(base64Data, isFinal) {
// Decode and handle audio
const audioData = atob(base64Data);
// Play audio or save to buffer
}
onError(error) {
// Handle error
}
close() {
if (this.ws) {
this.ws.close();
}
}
}

class STTWebSocketClient {
constructor(apiKey) {
this.apiKey = apiKey;
this.ws = null;
this.ready = false;
this.audioContext = null;
this.processor = null;
}
async connect() {
return new Promise((resolve, reject) => {
// Use query parameter for authentication (works with all clients)
this.ws = new WebSocket(`${BASE}/v1/stt/realtime?token=${this.apiKey}`);
this.ws.onopen = () => {
console.log('Connected');
resolve();
};
this.ws.onmessage = (event) => {
this.handleMessage(JSON.parse(event.data));
};
this.ws.onerror = (error) => {
console.error('WebSocket error:', error);
reject(error);
};
this.ws.onclose = () => {
console.log('Connection closed');
this.ready = false;
};
});
}
initialize(config) {
this.ws.send(JSON.stringify({
type: 'init',
...config
}));
}
async startRecording(sampleRate = 16000) {
const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
this.audioContext = new AudioContext({ sampleRate });
const source = this.audioContext.createMediaStreamSource(stream);
this.processor = this.audioContext.createScriptProcessor(4096, 1, 1);
this.processor.onaudioprocess = (e) => {
if (!this.ready) return;
const audioData = e.inputBuffer.getChannelData(0);
const pcm16 = new Int16Array(audioData.length);
for (let i = 0; i < audioData.length; i++) {
pcm16[i] = Math.max(-32768, Math.min(32767, audioData[i] * 32768));
}
const base64 = btoa(String.fromCharCode(...new Uint8Array(pcm16.buffer)));
this.ws.send(JSON.stringify({
type: 'audio',
data: base64
}));
};
source.connect(this.processor);
this.processor.connect(this.audioContext.destination);
}
stopRecording() {
if (this.processor) {
this.processor.disconnect();
this.processor = null;
}
if (this.audioContext) {
this.audioContext.close();
this.audioContext = null;
}
}
flush() {
if (!this.ready) {
throw new Error('Not ready. Wait for ready message.');
}
this.ws.send(JSON.stringify({
type: 'command',
command: 'flush'
}));
}
handleMessage(message) {
switch (message.type) {
case 'ready':
this.ready = true;
console.log('Ready:', message.request_id);
break;
case 'transcript':
if (message.is_final) {
this.onFinal(message);
} else {
this.onPartial(message);
}
break;
case 'flush_done':
console.log('Flush done:', message.request_id);
break;
case 'error':
console.error('Error:', message.error);
this.onError(message);
break;
}
}
onPartial(transcript) {
console.log('Partial:', transcript.text);
// Update UI with interim results
}
onFinal(transcript) {
console.log('Final:', transcript.text);
if (transcript.language) {
console.log('Detected language:', transcript.language);
}
if (transcript.confidence) {
console.log('Confidence:', transcript.confidence);
}
// Handle final transcription
}
onError(error) {
// Handle error
}
close() {
this.stopRecording();
if (this.ws) {
this.ws.close();
}
}
}
// ---- end spec code -----------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(predicate, what, ms = 60000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// The harness watches the socket beside the spec's own handlers (which it leaves in place).
function watch(client, seen) {
  client.ws.addEventListener('message', (event) => {
    const m = JSON.parse(event.data);
    seen.messages.push(m.type);
    if (m.type === 'ready') seen.ready = m;
    if (m.type === 'error') seen.errors.push(m.code);
    if (m.type === 'audio') {
      const audioData = atob(m.data);
      for (let i = 0; i < audioData.length; i++) seen.bytes.push(audioData.charCodeAt(i));
      seen.chunks += 1;
      if (m.is_final) seen.final = true;
    }
    if (m.type === 'transcript') (m.is_final ? seen.finals : seen.partials).push(m);
    if (m.type === 'flush_done') seen.flushDone = m;
  });
}

function fresh() {
  return { messages: [], ready: null, errors: [], chunks: 0, bytes: [], final: false, partials: [], finals: [], flushDone: null };
}

// The spec's TTS usage.
async function tts(key, config, text) {
  const client = new TTSWebSocketClient(key);
  const seen = fresh();
  await client.connect();
  watch(client, seen);
  client.initialize(config);
  await until(() => client.ready, 'tts ready');
  client.synthesize(text, true);
  await until(() => seen.final || seen.errors.length, 'tts audio');
  client.close();
  return seen;
}

// The spec's STT usage, with audio sent the way its onaudioprocess handler sends it.
async function stt(key, pcmBytes) {
  const client = new STTWebSocketClient(key);
  const seen = fresh();
  await client.connect();
  watch(client, seen);
  client.initialize({
    format: 'pcm',
    sample_rate: 16000,
    enable_timestamps: true,
    enable_language_detection: false,
  });
  await until(() => client.ready, 'stt ready');
  const samples = new Int16Array(pcmBytes.buffer, pcmBytes.byteOffset, pcmBytes.byteLength / 2);
  const began = Date.now();
  for (let start = 0; start < samples.length; start += 4096) {
    // A microphone: the ScriptProcessor calls onaudioprocess once per 4096 samples recorded.
    await sleep(Math.max(0, began + ((start + 4096) * 1000) / 16000 - Date.now()));
    // What the ScriptProcessor hands onaudioprocess: Float32 samples in [-1, 1).
    const audioData = Float32Array.from(samples.subarray(start, start + 4096), (s) => s / 32768);
    // ---- the body of the spec's onaudioprocess, verbatim ----
    const pcm16 = new Int16Array(audioData.length);
    for (let i = 0; i < audioData.length; i++) {
      pcm16[i] = Math.max(-32768, Math.min(32767, audioData[i] * 32768));
    }
    const base64 = btoa(String.fromCharCode(...new Uint8Array(pcm16.buffer)));
    client.ws.send(JSON.stringify({
      type: 'audio',
      data: base64
    }));
    // ----------------------------------------------------------
  }
  client.flush();
  await until(() => seen.flushDone || seen.errors.length, 'flush_done');
  client.close();
  return { ready: seen.ready, partials: seen.partials.map((t) => t.text), finals: seen.finals, flushDone: seen.flushDone, errors: seen.errors };
}

async function main() {
  const key = process.env.VOXBEAM_KEY;
  // Exactly the spec's TTS usage example.
  const spec = await tts(key, { voice_id: 'vl-xiaoxiao', format: 'wav', sample_rate: 16000 }, 'Hello, world!');
  // English speech for the STT client: PCM from the default voice.
  const english = await tts(key, { format: 'pcm', sample_rate: 16000 }, 'The weather is nice today. Thank you very much for your help.');
  const silence = new Uint8Array(16000); // 0.5 s
  const pcm = new Uint8Array(silence.length * 2 + english.bytes.length);
  pcm.set(Uint8Array.from(english.bytes), silence.length);
  const recognised = await stt(key, pcm);
  const wav = Uint8Array.from(spec.bytes);
  console.log('RESULT ' + JSON.stringify({
    tts: {
      ready: spec.ready,
      chunks: spec.chunks,
      bytes: wav.length,
      riff: String.fromCharCode(...wav.subarray(0, 4)),
      riffSize: new DataView(wav.buffer).getUint32(4, true),
      final: spec.final,
      errors: spec.errors,
    },
    english: { bytes: english.bytes.length, final: english.final, errors: english.errors },
    stt: recognised,
  }));
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
