// The app's journey through the generated TypeScript client (typescript-fetch), against the
// live service: compiled with `tsc --strict` together with the client, run by node.
// tests/e2e/test_sdk_e2e.py signs the two users in with the emulated Cognito and passes
// their tokens; any assertion failing throws, and node exits non-zero.
import {
  BookingsApi,
  Configuration,
  MeApi,
  MessagesApi,
  ProvidersApi,
  ResponseError,
  SyncApi,
  SyncConflictProblemFromJSON,
  UploadsApi,
  UploadCreatePurposeEnum,
  SyncOperationOpEnum,
} from "./client";

// No @types/node: the little of node this script uses.
declare const process: {
  env: Record<string, string | undefined>;
  exitCode: number | undefined;
};

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`journey: ${what}`);
}

const basePath = env("TRELLIS_BASE_URL");
const as = (token: string) => new Configuration({ basePath, accessToken: async () => token });
const consumer = as(env("CONSUMER_TOKEN"));
const provider = as(env("PROVIDER_TOKEN"));
const run = env("RUN_ID");

async function main(): Promise<void> {
  // The provider's profile, then the consumer books them.
  const profile = await new ProvidersApi(provider).putProviderProfile({
    providerProfileIn: {
      displayName: `SDK Sam ${run}`,
      bio: "Generated-client cleaning",
      categories: ["cleaning"],
      location: { lat: 52.52, lng: 13.405 },
      serviceRadiusKm: 15,
      hourlyRateCents: 2500,
      currency: "EUR",
    },
  });
  const me = await new MeApi(consumer).getMe();
  check(me.roles.includes("consumer"), `consumer roles ${me.roles}`);

  const start = new Date(Date.now() + 3 * 24 * 3600 * 1000);
  start.setUTCMinutes(0, 0, 0);
  const booked = await new BookingsApi(consumer).createBooking({
    bookingCreate: {
      providerId: profile.id,
      category: "cleaning",
      scheduledAt: start,
      location: { lat: 52.5, lng: 13.4, address: "Alexanderplatz 1" },
      notes: "Booked through the TypeScript SDK",
    },
    idempotencyKey: `sdk-book-${run}`,
  });
  check(booked.status === "requested", `created ${booked.status}`);
  check(booked.scheduledAt instanceof Date, "dates are Dates");
  check(booked.provider?.displayName === profile.displayName, "the provider party");

  const accepted = await new BookingsApi(provider).acceptBooking({ bookingId: booked.id });
  check(accepted.status === "accepted", `accepted ${accepted.status}`);

  // A message, read by the other party.
  const sent = await new MessagesApi(consumer).postMessage({
    bookingId: booked.id,
    messageCreate: { body: "Hello from the SDK" },
    idempotencyKey: `sdk-message-${run}`,
  });
  const thread = await new MessagesApi(provider).listMessages({ bookingId: booked.id });
  check(
    thread.items.some((m) => m.id === sent.id && m.body === "Hello from the SDK"),
    "the provider reads the message",
  );
  const reply = await new MessagesApi(provider).postMessage({
    bookingId: booked.id,
    messageCreate: { body: "See you then" },
  });
  const after = await new MessagesApi(consumer).listMessages({
    bookingId: booked.id,
    after: thread.pollCursor,
  });
  check(
    after.items.length === 1 && after.items[0].id === reply.id,
    "the consumer polls the reply after the cursor",
  );

  // An avatar through the presigned POST, straight to S3, then shown on the booking.
  const picture = new Uint8Array(1500).fill(7);
  picture.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const uploads = new UploadsApi(consumer);
  const upload = await uploads.createUpload({
    uploadCreate: {
      purpose: UploadCreatePurposeEnum.Avatar,
      contentType: "image/png",
      sizeBytes: picture.length,
      filename: "me.png",
    },
  });
  check(upload.upload != null, "a presigned POST");
  const form = new FormData();
  for (const [name, value] of Object.entries(upload.upload!.fields)) form.append(name, value);
  form.append("file", new Blob([picture], { type: "image/png" }), "me.png");
  const posted = await fetch(upload.upload!.url, { method: "POST", body: form });
  check(posted.ok, `S3 answered the POST with ${posted.status}`);
  const ready = await uploads.completeUpload({ uploadId: upload.id });
  check(ready.status === "ready", `upload ${ready.status}`);
  const seen = await new BookingsApi(provider).getBooking({ bookingId: booked.id });
  const avatarUrl = seen.consumer?.avatarUrl;
  check(typeof avatarUrl === "string", "the consumer's avatar on the booking");
  const bytes = new Uint8Array(await (await fetch(avatarUrl!)).arrayBuffer());
  check(
    bytes.length === picture.length && bytes.every((b, i) => b === picture[i]),
    "the avatar URL fetches the picture",
  );

  // Sync: a first write, then a stale one is a typed 409 with the conflicts.
  const sync = new SyncApi(consumer);
  const dataset = `sdk-${run}`;
  const first = await sync.postDataset({
    name: dataset,
    syncBatch: {
      deviceId: "phone",
      records: [{ op: SyncOperationOpEnum.Replace, key: "theme", value: "dark", syncCount: 0 }],
    },
  });
  check(first.syncCount === 1, `sync_count ${first.syncCount}`);
  let conflict = null;
  try {
    await sync.postDataset({
      name: dataset,
      syncBatch: {
        deviceId: "tablet",
        records: [{ op: SyncOperationOpEnum.Replace, key: "theme", value: "light", syncCount: 0 }],
      },
    });
  } catch (error) {
    if (!(error instanceof ResponseError)) throw error;
    check(error.response.status === 409, `stale write answered ${error.response.status}`);
    conflict = SyncConflictProblemFromJSON(await error.response.json());
  }
  check(conflict !== null, "a stale write is refused");
  check(conflict!.conflicts[0].key === "theme", "the conflict names the key");
  check(conflict!.conflicts[0].value === "dark", "the conflict carries the stored value");

  console.log(
    JSON.stringify({
      booking: booked.id,
      status: accepted.status,
      message: sent.id,
      avatar: ready.id,
      conflict: conflict!.type,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
