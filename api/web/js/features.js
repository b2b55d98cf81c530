// What this server offers beyond calls and contacts. Rooms, ringback tones and the hotline
// land over time; the OpenAPI document (which agrees with API.md) says which are there, with
// no side effect and no guessing from error codes.

export const FEATURES = {
  rooms: '/v1/rooms',
  ringback: '/v1/ringback/tones',
  hotline: '/v1/hotlines',
};

export async function detectFeatures(api) {
  let paths = {};
  try {
    paths = (await api.openapi())?.paths || {};
  } catch {
    // unknown: show only what every version has
  }
  return Object.fromEntries(Object.entries(FEATURES).map(([name, path]) => [name, path in paths]));
}
