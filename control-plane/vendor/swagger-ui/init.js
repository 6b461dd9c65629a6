// Points Swagger UI at this server's OpenAPI document. "Authorize" takes an API key
// (fl_api_…), sent as Authorization: Bearer on "Try it out".
window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
});
