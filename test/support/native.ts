// Native tests skip with a reason when the addon is not built here, except
// under KT_REQUIRE_NATIVE=1 (CI's addon-required mode): there a missing or
// broken addon fails the test file instead of skipping it silently.

/** `reason` (a skip) or false; throws under KT_REQUIRE_NATIVE=1 when there is a reason. */
export function nativeSkip (reason: string | false): string | false {
  if (reason !== false && process.env.KT_REQUIRE_NATIVE === '1') {
    throw new Error(`KT_REQUIRE_NATIVE=1 and the native addon is required, but: ${reason}`)
  }
  return reason
}
