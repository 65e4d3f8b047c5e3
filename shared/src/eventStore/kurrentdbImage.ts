/**
 * The KurrentDB server image this adapter is tested against and deployed with: the contract suite starts it when
 * it runs under Docker, and docker-compose.yml and the Kubernetes component pin the same tag (their tests check).
 */
export const KURRENTDB_IMAGE = 'kurrentplatform/kurrentdb:26.1.1';
