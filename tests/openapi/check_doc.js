// Validates an OpenAPI document with @apidevtools/swagger-parser (the
// OpenAPI 3.0 schema, and every $ref resolving).
//
// usage: node check_doc.js SWAGGER_PARSER_PACKAGE_DIR DOC_FILE
"use strict";
const SwaggerParser = require(process.argv[2]);
SwaggerParser.validate(process.argv[3])
  .then((api) => console.log(`valid: ${api.info.title} ${api.info.version}, ${Object.keys(api.paths).length} paths`))
  .catch((e) => {
    console.error(`INVALID: ${e.message}`);
    process.exit(1);
  });
