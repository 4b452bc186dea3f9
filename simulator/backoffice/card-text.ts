/**
 * Free text people type (a deactivation reason, a reviewer's note) is shown on pages and kept in
 * the ledger, so it must not carry a card number. Any run of 13 or more digits (spaces or dashes
 * allowed between them) is refused before anything is stored: a Luhn check would let through
 * a mistyped number, and no reason needs so long a number.
 */

/** True when the text holds something that could be a full card number. */
export function holdsCardNumber(text: string): boolean {
  return /\d(?:[ -]?\d){12}/.test(text);
}
