/**
 * Free text people type (a deactivation reason, a reviewer's note) is shown on pages and kept in
 * the ledger, so it must not carry a card number: a run of 13 to 19 digits, spaces or dashes
 * allowed between them, that passes the Luhn check is refused before anything is stored.
 */

function luhnOk(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** True when the text holds something that could be a full card number. */
export function holdsCardNumber(text: string): boolean {
  for (const m of text.matchAll(/\d(?:[ -]?\d){12,18}/g)) {
    const digits = m[0].replace(/[ -]/g, '');
    // Any 13..19-digit window of a longer run counts too.
    for (let len = 13; len <= Math.min(19, digits.length); len++) {
      for (let i = 0; i + len <= digits.length; i++)
        if (luhnOk(digits.slice(i, i + len))) return true;
    }
  }
  return false;
}
