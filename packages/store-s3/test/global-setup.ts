// Starts Ceph's S3 gateway on a throw-away cluster for this package's tests (or records why they skip).
export { setupRgw as default } from '@backy/test-env/rgw';
