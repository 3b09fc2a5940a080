/** Thrown by the option parsers for syntactically invalid option data (NBD_REP_ERR_INVALID). */
export class OptionSyntaxError extends Error {}

/** A violation of the protocol that ends the connection (a "hard disconnect"). */
export class ProtocolViolation extends Error {}
