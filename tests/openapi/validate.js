// Validates values against the schemas of an OpenAPI 3.0 document with ajv
// (strict mode: a keyword ajv does not know, or a misspelt one, is an error).
//
// usage: node validate.js AJV_PACKAGE_DIR CASES_FILE
//
// CASES_FILE holds {"doc": <the document>, "cases": [{"name", "pointer",
// "value"}]}, each pointer a JSON pointer into the document ("#/paths/...")
// naming a schema. Prints a JSON array, one {"name", "errors"} per case
// (errors null when the value is valid), and exits 0; 2 when a schema does
// not compile.
"use strict";
const fs = require("fs");

const [ajvDir, casesFile] = process.argv.slice(2);
const Ajv = require(ajvDir);
const { doc, cases } = JSON.parse(fs.readFileSync(casesFile, "utf8"));

const ajv = new Ajv({ strict: true, allErrors: true });
// the document's containers, which are not keywords of a schema
ajv.addKeyword("paths");
ajv.addKeyword("components");
const base = "https://twd.invalid/openapi.json";
ajv.addSchema({ $id: base, paths: doc.paths, components: doc.components });

const out = [];
for (const c of cases) {
  let validate;
  try {
    validate = ajv.getSchema(base + c.pointer);
  } catch (e) {
    console.error(`${c.name}: the schema at ${c.pointer} does not compile: ${e.message}`);
    process.exit(2);
  }
  if (!validate) {
    console.error(`${c.name}: no schema at ${c.pointer}`);
    process.exit(2);
  }
  const ok = validate(c.value);
  out.push({ name: c.name, errors: ok ? null : validate.errors.slice(0, 5) });
}
process.stdout.write(JSON.stringify(out));
