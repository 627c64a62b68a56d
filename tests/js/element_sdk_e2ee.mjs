// Element's own SDK (matrix-js-sdk with its Rust crypto) against a real Hauspost Synapse.
//
// Driven by tests/integration/test_element_sdk.py, which creates the accounts and the
// company space and asserts on what this prints. Input: one JSON argument
//   {"baseUrl", "alice": {"user", "password"}, "bob": {...}, "spaceId", "text", "fileBase64"}
// Output: one JSON line on stdout with what each step observed. Progress goes to stderr.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("warn");
const config = JSON.parse(process.argv[2]);
const TIMEOUT_MS = 60_000;
const say = (msg) => process.stderr.write(`element-sdk: ${msg}\n`);

function b64(bytes, { url = false, pad = false } = {}) {
    let out = Buffer.from(bytes).toString("base64");
    if (!pad) out = out.replace(/=+$/, "");
    return url ? out.replace(/\+/g, "-").replace(/\//g, "_") : out;
}

async function waitFor(what, probe) {
    const deadline = Date.now() + TIMEOUT_MS;
    while (Date.now() < deadline) {
        const value = await probe();
        if (value !== undefined && value !== null && value !== false) return value;
        await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`timed out waiting for ${what}`);
}

async function signIn({ user, password }) {
    const anonymous = sdk.createClient({ baseUrl: config.baseUrl });
    const login = await anonymous.login("m.login.password", {
        identifier: { type: "m.id.user", user },
        password,
        initial_device_display_name: "Element SDK test",
    });
    const client = sdk.createClient({
        baseUrl: config.baseUrl,
        accessToken: login.access_token,
        userId: login.user_id,
        deviceId: login.device_id,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve) => {
        client.on(sdk.ClientEvent.Sync, (state) => state === "PREPARED" && resolve());
    });
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    return client;
}

// The error a user would see: the SDK's MatrixError for a refused request.
async function refusal(action) {
    try {
        await action();
        return { status: 200, errcode: null, error: null };
    } catch (err) {
        return { status: err.httpStatus ?? null, errcode: err.errcode ?? null, error: err.data?.error ?? String(err) };
    }
}

// Encrypted attachments as Element sends them (AES-CTR-256, SHA-256 of the ciphertext).
async function encryptAttachment(plain) {
    const key = await crypto.subtle.generateKey({ name: "AES-CTR", length: 256 }, true, ["encrypt", "decrypt"]);
    const iv = new Uint8Array(16);
    crypto.getRandomValues(iv.subarray(0, 8));
    const cipher = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, plain));
    const jwk = await crypto.subtle.exportKey("jwk", key);
    const sha256 = b64(new Uint8Array(await crypto.subtle.digest("SHA-256", cipher)));
    return { cipher, info: { key: jwk, iv: b64(iv), hashes: { sha256 }, v: "v2" } };
}

async function decryptAttachment(cipher, info) {
    const sha256 = b64(new Uint8Array(await crypto.subtle.digest("SHA-256", cipher)));
    if (sha256 !== info.hashes.sha256) throw new Error("attachment hash mismatch");
    const key = await crypto.subtle.importKey("jwk", info.key, { name: "AES-CTR" }, false, ["decrypt"]);
    const iv = Buffer.from(info.iv, "base64");
    return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, cipher));
}

async function decryptedEvents(client, roomId) {
    const room = client.getRoom(roomId);
    if (!room) return [];
    const events = room.getLiveTimeline().getEvents();
    for (const event of events) await client.decryptEventIfNeeded(event);
    return events.filter((e) => e.getType() === "m.room.message" && !e.isDecryptionFailure());
}

async function main() {
    const alice = await signIn(config.alice);
    const bob = await signIn(config.bob);
    const result = {};
    try {
        say("alice creates a room and invites bob");
        const { room_id: roomId } = await alice.createRoom({ preset: "private_chat", invite: [bob.getUserId()] });
        await waitFor("bob's invite", () => bob.getRoom(roomId));
        await bob.joinRoom(roomId);
        await waitFor("bob's join at alice", () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
        result.roomEncrypted = await waitFor("encryption state", async () =>
            (await alice.getCrypto().isEncryptionEnabledInRoom(roomId)) || undefined);

        say("alice sends an encrypted message");
        await alice.sendTextMessage(roomId, config.text);
        const [message] = await waitFor("bob decrypts the message", async () => {
            const found = (await decryptedEvents(bob, roomId)).filter((e) => e.getContent().msgtype === "m.text");
            return found.length ? found : undefined;
        });
        result.text = message.getContent().body;
        result.textWasEncrypted = message.isEncrypted();

        say("alice sends an encrypted attachment");
        const plain = Buffer.from(config.fileBase64, "base64");
        const { cipher, info } = await encryptAttachment(plain);
        const upload = await alice.uploadContent(new Blob([cipher]), { type: "application/octet-stream", name: "bericht.pdf" });
        await alice.sendMessage(roomId, {
            msgtype: "m.file", body: "bericht.pdf",
            info: { mimetype: "application/pdf", size: plain.length },
            file: { url: upload.content_uri, ...info },
        });
        const [fileEvent] = await waitFor("bob decrypts the file event", async () => {
            const found = (await decryptedEvents(bob, roomId)).filter((e) => e.getContent().msgtype === "m.file");
            return found.length ? found : undefined;
        });
        const file = fileEvent.getContent().file;
        // Authenticated media (MSC3916): the SDK's own URL for it, fetched with bob's token.
        const url = bob.mxcUrlToHttp(file.url, undefined, undefined, undefined, false, true, true);
        result.downloadPath = new URL(url).pathname.replace(/[^/]+\/[^/]+$/, "");
        const response = await fetch(url, { headers: { Authorization: `Bearer ${bob.getAccessToken()}` } });
        result.downloadStatus = response.status;
        const fetched = new Uint8Array(await response.arrayBuffer());
        result.fileBase64 = b64(await decryptAttachment(fetched, file), { pad: true });
        const unauthenticated = await fetch(url);
        result.unauthenticatedStatus = unauthenticated.status;

        say("alice tries plaintext and a message into the company space");
        const txn = `plain-${Date.now()}`;
        result.plaintext = await refusal(() => alice.http.authedRequest(
            sdk.Method.Put, `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`,
            undefined, { msgtype: "m.text", body: "im Klartext" }));
        // As Element does: send only once the client knows the room is encrypted.
        const encrypted = (roomId) => async () =>
            (await alice.getCrypto().isEncryptionEnabledInRoom(roomId)) || undefined;
        await waitFor("the company space", () => alice.getRoom(config.spaceId));
        await waitFor("the space's encryption", encrypted(config.spaceId));
        result.space = await refusal(() => alice.sendTextMessage(config.spaceId, "Hallo an alle"));
        const { room_id: ownSpace } = await alice.createRoom({ preset: "private_chat", creation_content: { type: "m.space" } });
        await waitFor("alice's own space", () => alice.getRoom(ownSpace));
        await waitFor("her space's encryption", encrypted(ownSpace));
        result.ownSpace = await refusal(() => alice.sendTextMessage(ownSpace, "Mein eigener Space"));
    } finally {
        alice.stopClient();
        bob.stopClient();
    }
    process.stdout.write(JSON.stringify(result) + "\n");
}

main().then(() => process.exit(0), (err) => {
    process.stderr.write(`element-sdk: failed: ${err?.stack ?? err}\n`);
    process.exit(1);
});
