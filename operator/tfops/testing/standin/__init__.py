"""A stand-in for TF Serving's REST API, as strict as TF Serving's own source
(docs/tfserving-standin.md): the pure process model (`tfserving`), the HTTP server
answering for every pod (`server`), and TensorFlow-backed loading and SavedModels
for the tests that need real models (`tensorflow_backend`, `savedmodels`)."""
