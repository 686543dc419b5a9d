// The pages' JavaScript (static/js): plain scripts for browsers, no build step. `make lint` runs it.
const js = require("@eslint/js");
const globals = require("globals");

module.exports = [
  js.configs.recommended,
  {
    files: ["static/js/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",
      globals: { ...globals.browser, Live: "readonly" },
    },
    rules: {
      "no-unused-vars": ["error", { args: "after-used", argsIgnorePattern: "^_" }],
      eqeqeq: ["error", "always", { null: "ignore" }],
      "no-var": "error",
      "prefer-const": "error",
      "no-implicit-globals": "error",
      "no-restricted-properties": [
        "error",
        { property: "innerHTML", message: "build nodes with Live.el: text never becomes markup" },
        { property: "outerHTML", message: "build nodes with Live.el: text never becomes markup" },
      ],
      "no-eval": "error",
    },
  },
];
