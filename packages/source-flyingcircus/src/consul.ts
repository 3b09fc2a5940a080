import { ConsulClient, type ConsulClientOptions } from '@backy/consul';

/** The Consul client of `@backy/consul` as this source uses it: a 401/403 names the `consul_acl_token` option. */
export class ConsulKv extends ConsulClient {
  constructor(options: Omit<ConsulClientOptions, 'tokenSetting'> = {}) {
    super({ ...options, tokenSetting: 'consul_acl_token' });
  }
}
