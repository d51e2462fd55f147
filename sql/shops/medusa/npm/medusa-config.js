// The smallest Medusa project configuration its CLI needs to run its own migrations
// (`medusa db:migrate`) and the checkout script (`medusa exec checkout.js`) against a
// scratch database. No server is started: the secrets below only satisfy the config check.
const { loadEnv, defineConfig } = require("@medusajs/framework/utils")

loadEnv(process.env.NODE_ENV || "development", process.cwd())

module.exports = defineConfig({
  projectConfig: {
    databaseUrl: process.env.DATABASE_URL,
    http: {
      jwtSecret: "schema-build-only",
      cookieSecret: "schema-build-only",
      storeCors: "",
      adminCors: "",
      authCors: "",
    },
  },
  admin: { disable: true },
})
