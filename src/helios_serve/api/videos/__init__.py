"""`/v1/videos`: the request side (parsing, validation, uploads) of OpenAI's video job API."""
