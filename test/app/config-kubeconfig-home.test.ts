// `--kubeconfig=~/...` reaches kind-tunnel unexpanded (a shell expands `~`
// only at the start of a word): it is the home directory, as kubectl reads it.
import t from 'tap'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { buildUpConfig, expandHome } from '../../src/app/config.js'

t.test('a leading ~ is the home directory', async (t) => {
  t.equal(expandHome('~'), homedir())
  t.equal(expandHome('~/.kube/config'), join(homedir(), '.kube/config'))
  t.equal(expandHome('/etc/kube/config'), '/etc/kube/config', 'absolute paths untouched')
  t.equal(expandHome('rel/~/x'), 'rel/~/x', 'a ~ inside the path is a name')
  t.equal(expandHome('~other/config'), '~other/config', '~user is left alone')
  t.equal(buildUpConfig({ kubeconfig: '~/k.yaml', stateDir: '/tmp/kt-home-test' }).kubeconfigPath, join(homedir(), 'k.yaml'), 'applied to --kubeconfig')
})
