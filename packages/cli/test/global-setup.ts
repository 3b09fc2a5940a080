// Ceph's S3 gateway for the tests that keep archives in object storage (copy.test.ts): started once for
// all test files, or skipped with the reason printed (never under CI=true). See @backy/test-env/rgw.
export { setupRgw as default } from '@backy/test-env/rgw';
