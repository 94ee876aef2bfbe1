from shared.plugins.inference.serve import BaseInferenceService


class InferenceService(BaseInferenceService):
    def __init__(self):
        super().__init__()
        self._model = None

    async def __call__(self, inputs: dict, parameters: dict) -> dict:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer("all-MiniLM-L6-v2")
        text = inputs.get("text", "")
        embedding = self._model.encode([text])[0].tolist()
        return {"embedding": embedding, "sentiment": "positive" if len(text) > 50 else "neutral"}
