/** Base of every error this project throws on purpose: a stable machine-readable code and an optional cause. */
export class RpaError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A configuration value is missing or malformed; the message names the variable. */
export class ConfigError extends RpaError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

/** A payload read from the wire or the store failed its schema. */
export class SchemaError extends RpaError {
  constructor(
    message: string,
    readonly issues: ReadonlyArray<{ path: string; message: string }>,
  ) {
    super('SCHEMA_INVALID', message);
  }
}
