// Every user-visible string of the web client lives here, keyed by language.
// To add a language, copy the "fr" block, translate it, and open the page
// with ?lang=<code> (or set <html lang>).

export const STRINGS = {
  fr: {
    appTitle: "Visio",
    joinHeading: "Rejoindre une salle",
    roomLabel: "Nom de la salle",
    roomHint: "Lettres sans accents, chiffres, « _ », « . » ou « - ».",
    nameLabel: "Votre nom",
    join: "Rejoindre",
    leave: "Quitter",
    participantsHeading: "Participants",
    roomCaption: "Salle : {room}",
    you: "Vous ({name})",
    videoOf: "Vidéo de {name}",
    yourVideo: "Votre vidéo",
    unknownParticipant: "Participant",
    enableSound: "Activer le son",
    invalidRoom: "Le nom de la salle doit faire 1 à 64 caractères : lettres sans accents, chiffres, « _ », « . » ou « - ».",
    invalidName: "Indiquez votre nom (64 caractères au plus).",
    requestingMedia: "Accès à la caméra et au micro…",
    mediaDenied: "Caméra ou micro indisponible ({reason}). Vous rejoignez la salle sans les partager.",
    connecting: "Connexion au serveur…",
    joinedRoom: "Vous êtes dans la salle « {room} ».",
    publishing: "Envoi de votre caméra et de votre micro…",
    connectionLost: "La connexion au serveur a été perdue.",
    connectionFailed: "Impossible de se connecter au serveur.",
    unsupportedBrowser: "Ce navigateur ne permet pas la visioconférence (WebRTC indisponible).",
    mediaFailed: "La connexion audio/vidéo a échoué.",
    left: "Vous avez quitté la salle.",
    serverError: "Erreur du serveur : {message}",
    errors: {
      room_full: "La salle est complète.",
      token_required: "Ce serveur n'accepte que les liens de réunion : ouvrez le lien reçu.",
      token_invalid: "Ce lien de réunion n'est pas valide.",
      token_expired: "Ce lien de réunion a expiré : la réunion est terminée.",
      token_not_yet_valid: "La réunion ouvre 15 minutes avant son début : revenez un peu plus tard.",
      wrong_room: "Ce lien de réunion est celui d'une autre salle.",
      booking_cancelled: "Cette réunion a été annulée.",
      unsupported_version: "Cette page n'est plus à jour : rechargez-la.",
      invalid_sdp: "Le serveur a refusé la description audio/vidéo : {message}",
      bad_message: "Requête refusée : {message}",
      rate_limited: "Trop de requêtes invalides : connexion fermée.",
      internal: "Erreur interne du serveur, réessayez.",
    },
  },
};

export function pickLanguage() {
  const requested = new URLSearchParams(location.search).get("lang")
    || document.documentElement.lang
    || "fr";
  const code = requested.toLowerCase().split("-")[0];
  return Object.hasOwn(STRINGS, code) ? code : "fr";
}

// Returns t(key, vars): the string for key ("a.b" reaches nested tables) with
// {placeholders} replaced by vars. Falls back to French, then to the key.
export function translator(lang) {
  const lookup = (table, key) =>
    key.split(".").reduce((node, part) => (node == null ? undefined : node[part]), table);
  return (key, vars = {}) => {
    let text = lookup(STRINGS[lang], key);
    if (typeof text !== "string") text = lookup(STRINGS.fr, key);
    if (typeof text !== "string") return key;
    return text.replace(/\{(\w+)\}/g, (match, name) =>
      Object.hasOwn(vars, name) ? String(vars[name]) : match);
  };
}
