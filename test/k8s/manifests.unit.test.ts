/**
 * Offline validation of the Kubernetes manifests in deploy/k8s: every overlay is rendered with `kubectl kustomize`,
 * every object is checked against its Kubernetes or KEDA schema, and the properties a platform team relies on are
 * asserted (probes, limits, non-root, dropped capabilities, autoscaling, disruption budgets, network isolation,
 * termination grace longer than the hand-over). No cluster is needed; without kubectl the suite is skipped and
 * says why.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import type { z } from 'zod';
import { CommandApiEnv } from '../../services/command-api/src/config.js';
import { ProjectorEnv } from '../../services/projector/src/config.js';
import { QueryApiEnv } from '../../services/query-api/src/config.js';
import { RobotEnv } from '../../services/robot/src/config.js';
import { KURRENTDB_IMAGE } from '../../shared/src/eventStore/kurrentdbImage.js';

const K8S_DIR = fileURLToPath(new URL('../../deploy/k8s/', import.meta.url));
const OVERLAYS = readdirSync(`${K8S_DIR}overlays`, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .sort();

const APIS = ['command-api', 'query-api'] as const;
const SERVICES = [...APIS, 'projector', 'robot'] as const;
type ServiceName = (typeof SERVICES)[number];
const ASSIGNMENT_CONSUMERS = ['assignments-high', 'assignments-low', 'assignments-normal'];
/** Addresses no robot may reach: the cloud metadata service and one address of each private range. */
const FORBIDDEN_FOR_ROBOTS = [
  '169.254.169.254',
  '10.0.0.1',
  '10.96.0.1',
  '172.16.0.1',
  '172.31.255.254',
  '192.168.1.1',
];

/** The schema of every service's environment, so that the rendered configuration is parsed as the service would. */
const ENV_SCHEMAS: Record<ServiceName, z.ZodType> = {
  'command-api': CommandApiEnv,
  'query-api': QueryApiEnv,
  projector: ProjectorEnv,
  robot: RobotEnv,
};

/** Why the suite cannot run here, or undefined when kubectl can render kustomizations. */
function kubectlUnavailable(): string | undefined {
  const probe = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 30_000 });
  if (probe.error) return `kubectl is not on PATH (${probe.error.message})`;
  if (probe.status !== 0) return `kubectl version --client failed: ${probe.stderr.trim()}`;
  return undefined;
}

const skipReason = kubectlUnavailable();
if (skipReason) console.warn(`deploy/k8s manifests not validated: ${skipReason}`);

/**
 * Rendered YAML is walked untyped: every object is first validated against its schema (the first test of each
 * overlay), and the assertions read only the few fields they check.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Loose;
  data?: Record<string, string>;
}

/** The model class of every kind the manifests may contain; Loose other kind fails the test. */
const MODELS: Record<string, new (data: Loose) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
};

function render(overlay: string): Obj[] {
  const text = execFileSync('kubectl', ['kustomize', `${K8S_DIR}overlays/${overlay}`], {
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return parseAllDocuments(text).map((doc) => {
    expect(doc.errors).toEqual([]);
    return doc.toJS() as Obj;
  });
}

function ipv4(address: string): number {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new RangeError(`${address} is not an IPv4 address`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** Whether an IPv4 CIDR contains an address; an IPv6 CIDR never does. */
function cidrContains(cidr: string, address: string): boolean {
  const [base, bits] = cidr.split('/');
  if (!base || base.includes(':')) return false;
  const prefix = Number(bits ?? 32);
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return (ipv4(base) & mask) >>> 0 === (ipv4(address) & mask) >>> 0;
}

/** Whether a label selector (matchLabels and In/NotIn/Exists expressions) selects pods with these labels. */
function selects(selector: Loose, labels: Record<string, string>): boolean {
  for (const [key, value] of Object.entries(selector?.matchLabels ?? {}))
    if (labels[key] !== value) return false;
  for (const expr of selector?.matchExpressions ?? []) {
    const has = expr.key in labels;
    const value = labels[expr.key];
    if (expr.operator === 'In' && !(has && expr.values.includes(value))) return false;
    if (expr.operator === 'NotIn' && has && expr.values.includes(value)) return false;
    if (expr.operator === 'Exists' && !has) return false;
    if (expr.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/** The environment a container starts with: its ConfigMaps, then its own values; references get a stand-in. */
function containerEnv(container: Loose, objects: Obj[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    const name = source.configMapRef?.name;
    expect(name, 'envFrom names only ConfigMaps').toBeDefined();
    const map = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name);
    expect(map, `ConfigMap ${name} is rendered`).toBeDefined();
    Object.assign(env, map!.data);
  }
  for (const entry of container.env ?? []) {
    if (entry.value !== undefined) env[entry.name] = entry.value;
    else if (entry.valueFrom?.fieldRef) env[entry.name] = 'robot-0';
  }
  return env;
}

function deployments(objects: Obj[]): Map<ServiceName, Obj> {
  const found = new Map<ServiceName, Obj>();
  for (const name of SERVICES) {
    const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === name);
    expect(deployment, `Deployment ${name}`).toBeDefined();
    found.set(name, deployment!);
  }
  return found;
}

const workloads = (objects: Obj[]): Obj[] =>
  objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');

describe.skipIf(skipReason !== undefined)('deploy/k8s manifests', () => {
  it('has the dev and prod overlays', () => {
    expect(OVERLAYS).toEqual(expect.arrayContaining(['dev', 'prod']));
  });

  describe.each(OVERLAYS)('overlay %s', (overlay) => {
    let objects: Obj[] = [];
    let namespace: string | undefined;
    let services = new Map<ServiceName, Obj>();
    beforeAll(() => {
      objects = render(overlay);
      namespace = objects.find((o) => o.kind === 'Namespace')?.metadata.name;
      services = deployments(objects);
    });

    it('validates every object against its Kubernetes or KEDA schema', () => {
      for (const object of objects) {
        const Model = MODELS[`${object.apiVersion}/${object.kind}`];
        expect(Model, `a schema for ${object.apiVersion} ${object.kind}`).toBeDefined();
        expect(() => new Model!(object).validate(), `${object.kind} ${object.metadata.name}`).not.toThrow();
      }
    });

    it('puts every namespaced object in the overlay namespace', () => {
      expect(namespace).toBeDefined();
      for (const object of objects.filter((o) => o.kind !== 'Namespace'))
        expect(object.metadata.namespace, `${object.kind} ${object.metadata.name}`).toBe(namespace);
    });

    it('gives every container probes, requests and limits, and a locked-down security context', () => {
      for (const workload of workloads(objects)) {
        const pod = workload.spec.template.spec;
        expect(pod.automountServiceAccountToken, workload.metadata.name).toBe(false);
        for (const container of pod.containers) {
          const where = `${workload.metadata.name}/${container.name}`;
          expect(container.livenessProbe?.httpGet, `${where} liveness`).toBeDefined();
          expect(container.readinessProbe?.httpGet, `${where} readiness`).toBeDefined();
          const ports = (container.ports ?? []).map((p: Loose) => p.name);
          for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe])
            if (probe) expect(ports, `${where} probes a declared port`).toContain(probe.httpGet.port);
          for (const kind of ['requests', 'limits'])
            for (const resource of ['cpu', 'memory'])
              expect(container.resources?.[kind]?.[resource], `${where} ${kind}.${resource}`).toBeDefined();
          const security = container.securityContext ?? {};
          expect(security.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, `${where} runAsNonRoot`).toBe(
            true,
          );
          expect(security.runAsUser ?? pod.securityContext?.runAsUser, `${where} runAsUser`).toBeGreaterThan(
            0,
          );
          expect(security.allowPrivilegeEscalation, `${where} allowPrivilegeEscalation`).toBe(false);
          expect(security.readOnlyRootFilesystem, `${where} readOnlyRootFilesystem`).toBe(true);
          expect(security.capabilities?.drop, `${where} drops capabilities`).toContain('ALL');
          expect(security.capabilities?.add ?? [], `${where} adds no capability`).toEqual([]);
          expect(security.privileged ?? false, `${where} privileged`).toBe(false);
          const seccomp = security.seccompProfile?.type ?? pod.securityContext?.seccompProfile?.type;
          expect(seccomp, `${where} seccomp`).toBe('RuntimeDefault');
        }
      }
    });

    it('probes /healthz for liveness and /readyz for readiness of the four services', () => {
      for (const [name, deployment] of services) {
        const [container] = deployment.spec.template.spec.containers;
        expect(container.livenessProbe.httpGet.path, name).toBe('/healthz');
        expect(container.readinessProbe.httpGet.path, name).toBe('/readyz');
      }
    });

    it('starts each service with an environment its own schema accepts', () => {
      for (const [name, deployment] of services) {
        const env = containerEnv(deployment.spec.template.spec.containers[0], objects);
        const parsed = ENV_SCHEMAS[name].safeParse(env);
        expect(parsed.success ? [] : parsed.error.issues, name).toEqual([]);
      }
    });

    it('lets robots and the projector finish their hand-over before they are killed', () => {
      for (const [name, schema] of [
        ['robot', RobotEnv],
        ['projector', ProjectorEnv],
      ] as const) {
        const pod = services.get(name)!.spec.template.spec;
        const env = schema.parse(containerEnv(pod.containers[0], objects));
        expect(pod.terminationGracePeriodSeconds, name).toBeGreaterThan(env.SHUTDOWN_GRACE_MS / 1000);
      }
    });

    it('gives Chromium a writable /tmp and a memory-backed /dev/shm on a read-only root', () => {
      const pod = services.get('robot')!.spec.template.spec;
      const mounts = new Map<string, string>(
        pod.containers[0].volumeMounts.map((m: Loose) => [m.mountPath, m.name]),
      );
      const volume = (path: string): Loose => pod.volumes.find((v: Loose) => v.name === mounts.get(path));
      expect(volume('/tmp')?.emptyDir).toBeDefined();
      expect(volume('/dev/shm')?.emptyDir?.medium).toBe('Memory');
      expect(volume('/etc/rpa/secrets')?.secret?.secretName).toBeDefined();
    });

    it('reads API keys from a mounted Secret, never from a ConfigMap', () => {
      for (const name of APIS) {
        const container = services.get(name)!.spec.template.spec.containers[0];
        const env = containerEnv(container, objects);
        expect(env.API_KEYS, name).toBeUndefined();
        const file = env.API_KEYS_FILE!;
        const mount = container.volumeMounts.find((m: Loose) => file.startsWith(`${m.mountPath}/`));
        const volume = services
          .get(name)!
          .spec.template.spec.volumes.find((v: Loose) => v.name === mount?.name);
        expect(volume?.secret?.secretName, `${name} API_KEYS_FILE on a Secret volume`).toBeDefined();
      }
    });

    it('autoscales each API with an HPA and exposes it through a Service', () => {
      for (const name of APIS) {
        const hpa = objects.find(
          (o) => o.kind === 'HorizontalPodAutoscaler' && o.spec.scaleTargetRef.name === name,
        );
        expect(hpa, `HPA for ${name}`).toBeDefined();
        expect(hpa!.spec.scaleTargetRef.kind).toBe('Deployment');
        expect(hpa!.spec.maxReplicas).toBeGreaterThanOrEqual(hpa!.spec.minReplicas);
        if (overlay === 'prod') expect(hpa!.spec.minReplicas, name).toBeGreaterThanOrEqual(2);
        const podLabels = services.get(name)!.spec.template.metadata.labels;
        const service = objects.find(
          (o) => o.kind === 'Service' && selects({ matchLabels: o.spec.selector }, podLabels),
        );
        expect(service, `Service for ${name}`).toBeDefined();
      }
    });

    it('scales robots with KEDA on the backlog of the three assignment consumers', () => {
      const scaled = objects.filter((o) => o.kind === 'ScaledObject');
      expect(scaled).toHaveLength(1);
      const { spec } = scaled[0]!;
      expect(spec.scaleTargetRef.name).toBe('robot');
      expect(spec.minReplicaCount).toBeGreaterThanOrEqual(1);
      expect(spec.triggers.every((t: Loose) => t.type === 'nats-jetstream')).toBe(true);
      expect(spec.triggers.every((t: Loose) => t.metadata.stream === 'RPA_WORK')).toBe(true);
      expect(spec.triggers.map((t: Loose) => t.metadata.consumer).sort()).toEqual(ASSIGNMENT_CONSUMERS);
      for (const trigger of spec.triggers)
        expect(trigger.metadata.natsServerMonitoringEndpoint).toContain(`.${namespace}.svc`);
    });

    it('runs the projector as a single active instance that node drains can still move', () => {
      const projector = services.get('projector')!;
      expect(projector.spec.replicas).toBe(1);
      expect(projector.spec.strategy.type).toBe('Recreate');
    });

    it('covers every workload with a disruption budget that lets a node drain', () => {
      for (const workload of workloads(objects)) {
        const labels = workload.spec.template.metadata.labels;
        const budgets = objects.filter(
          (o) => o.kind === 'PodDisruptionBudget' && selects(o.spec.selector, labels),
        );
        expect(budgets, workload.metadata.name).toHaveLength(1);
        expect(budgets[0]!.spec.maxUnavailable, workload.metadata.name).toBeGreaterThanOrEqual(1);
      }
    });

    it('denies ingress by default and lets only the APIs be reached from anywhere', () => {
      const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
      const defaultDeny = policies.find(
        (p) =>
          Object.keys(p.spec.podSelector).length === 0 &&
          p.spec.policyTypes.includes('Ingress') &&
          (p.spec.ingress ?? []).length === 0,
      );
      expect(defaultDeny, 'a default-deny ingress policy').toBeDefined();
      for (const policy of policies) {
        const open = (policy.spec.ingress ?? []).some(
          (rule: Loose) => !rule.from?.length || rule.from.some((peer: Loose) => peer.ipBlock),
        );
        if (!open) continue;
        expect(
          Object.keys(policy.spec.podSelector),
          `${policy.metadata.name} selects some pods`,
        ).not.toHaveLength(0);
        for (const workload of workloads(objects)) {
          if (selects(policy.spec.podSelector, workload.spec.template.metadata.labels))
            expect(APIS, `${policy.metadata.name} opens ${workload.metadata.name} to anyone`).toContain(
              workload.metadata.name,
            );
        }
      }
    });

    it('keeps robots away from the metadata service and cluster-internal ranges', () => {
      const robotLabels = services.get('robot')!.spec.template.metadata.labels;
      const egress = objects.filter(
        (o) =>
          o.kind === 'NetworkPolicy' &&
          o.spec.policyTypes.includes('Egress') &&
          selects(o.spec.podSelector, robotLabels),
      );
      expect(egress, 'an egress policy selecting robots').not.toHaveLength(0);
      const ipBlocks = [];
      for (const policy of egress) {
        for (const rule of policy.spec.egress ?? []) {
          expect(
            rule.to?.length,
            `${policy.metadata.name}: an egress rule without "to" allows everything`,
          ).toBeGreaterThan(0);
          for (const peer of rule.to) {
            if (!peer.ipBlock) {
              expect(peer.podSelector ?? peer.namespaceSelector, 'a peer selects pods').toBeDefined();
              continue;
            }
            ipBlocks.push(peer.ipBlock);
            for (const address of FORBIDDEN_FOR_ROBOTS) {
              if (!cidrContains(peer.ipBlock.cidr, address)) continue;
              const excepted = (peer.ipBlock.except ?? []).some((cidr: string) =>
                cidrContains(cidr, address),
              );
              expect(excepted, `${policy.metadata.name} lets robots reach ${address}`).toBe(true);
            }
          }
        }
      }
      expect(
        ipBlocks.map((b) => b.cidr),
        'robots reach the internet',
      ).toContain('0.0.0.0/0');
      expect(ipBlocks.flatMap((b) => b.except ?? [])).toEqual(
        expect.arrayContaining(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.169.254/32']),
      );
    });

    it('tags every image of this system for the overlay', () => {
      for (const [name, deployment] of services) {
        const image: string = deployment.spec.template.spec.containers[0].image;
        expect(image, name).toMatch(/:[\w.-]+$/);
        if (overlay === 'dev') expect(image, name).toMatch(/:dev$/);
        else expect(image, name).not.toMatch(/:(dev|latest)$/);
      }
    });

    it('runs the KurrentDB the adapter is tested against, where the overlay has one', () => {
      const kurrentdb = objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'kurrentdb');
      if (overlay === 'prod') expect(kurrentdb, 'the prod overlay runs KurrentDB').toBeDefined();
      if (kurrentdb) expect(kurrentdb.spec.template.spec.containers[0].image).toBe(KURRENTDB_IMAGE);
    });
  });
});

describe('deploy/k8s/nats-values.yaml', () => {
  const values = parse(readFileSync(`${K8S_DIR}nats-values.yaml`, 'utf8'));

  it('asks for three clustered JetStream servers of 2.12.3 or newer that sync every write', () => {
    expect(values.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(values.config.jetstream.enabled).toBe(true);
    expect(values.config.jetstream.merge.sync_interval).toBe('always');
    const [major, minor, patch] = String(values.container.image.tag).split(/[.-]/).map(Number);
    expect([major, minor, patch]).toEqual([expect.any(Number), expect.any(Number), expect.any(Number)]);
    expect(major! * 1e6 + minor! * 1e3 + patch!).toBeGreaterThanOrEqual(2_012_003);
  });

  it('keeps the servers on different hosts', () => {
    const antiAffinity = values.podTemplate.merge.spec.affinity.podAntiAffinity;
    expect(antiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey).toBe(
      'kubernetes.io/hostname',
    );
  });
});
