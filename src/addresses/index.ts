// Binding and removing load-balancer IPs on the loopback interface, per
// platform, and the privileged helper that does it for an unprivileged agent.
// This module never decides which IPs: routing/ipam.ts does.

export { type AddressBackend, type AddressPlatform, type Command, type LoopbackAddress, backendFor, cleanupCommand, darwinBackend, isSystemLoopback, linuxBackend, win32Backend } from './backends.js'
export { AddressHelperClient, type HelperClientOptions } from './client.js'
export { type HelperOptions, type HelperStats, runHelper } from './helper.js'
export { type AddressChange, AddressManager, type AddressManagerOptions, type Addresses, listAliases } from './manager.js'
export { type CommandResult, type CommandRunner, resolveProgram, systemRunner } from './runner.js'
export { type HelperRequest, type HelperVerb, MAX_REQUEST_BYTES, parseRequest, validateIp, validatePool } from './validate.js'
