// A kubeconfig for the test API server. Strings are written as YAML
// double-quoted scalars (JSON string syntax is a subset), so no YAML
// library is needed and no value can break the document.

export interface KubeconfigOptions {
  server: string
  /** Context, cluster and user name (kind names them `kind-<cluster>`). */
  name: string
  token?: string | undefined
  namespace?: string | undefined
  /** Base64 PEM of the CA to trust (HTTPS servers). */
  caData?: string | undefined
}

export function renderKubeconfig (o: KubeconfigOptions): string {
  const q = (s: string): string => JSON.stringify(s)
  const lines = [
    'apiVersion: v1',
    'kind: Config',
    'preferences: {}',
    'clusters:',
    '- name: ' + q(o.name),
    '  cluster:',
    '    server: ' + q(o.server),
    // client-node 1.x refuses an http: server unless the cluster sets this
    // (KubeConfig.createAgent); kubectl ignores it for http:.
    ...(o.caData === undefined ? ['    insecure-skip-tls-verify: true'] : ['    certificate-authority-data: ' + q(o.caData)]),
    'contexts:',
    '- name: ' + q(o.name),
    '  context:',
    '    cluster: ' + q(o.name),
    '    user: ' + q(o.name),
  ]
  if (o.namespace !== undefined) lines.push('    namespace: ' + q(o.namespace))
  lines.push('current-context: ' + q(o.name), 'users:', '- name: ' + q(o.name))
  if (o.token === undefined) lines.push('  user: {}')
  else lines.push('  user:', '    token: ' + q(o.token))
  return lines.join('\n') + '\n'
}
