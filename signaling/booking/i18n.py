"""Every string of the booking pages, in French (the default) and English."""

from __future__ import annotations

from datetime import date, datetime

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
EN_DASH = " \u2013 "

STRINGS: dict[str, dict[str, str]] = {
    "fr": {
        "app": "Visio — réservations",
        "dev_banner": "Mode développement : on peut rejoindre une salle sans lien de réunion. "
                      "Ne pas exposer ce serveur.",
        "login_title": "Connexion",
        "email": "Adresse e-mail",
        "password": "Mot de passe",
        "log_in": "Se connecter",
        "log_out": "Se déconnecter",
        "login_failed": "Adresse e-mail ou mot de passe incorrect.",
        "switch_language": "English",
        "rooms": "Salles",
        "room": "Salle",
        "people": "{n} personnes max.",
        "add_room": "Ajouter une salle",
        "room_name": "Nom de la salle",
        "max_participants": "Participants au maximum",
        "no_rooms": "Aucune salle pour l'instant : ajoutez-en une ci-dessous.",
        "week_of": "Semaine du {date}",
        "previous_week": "\u2039 Semaine précédente",
        "next_week": "Semaine suivante \u203a",
        "this_week": "Aujourd'hui",
        "new_booking": "Nouvelle réservation",
        "book_at": "Réserver le {day} à {time}",
        "calendar_hint": "Touchez un créneau libre pour réserver.",
        "title": "Titre",
        "date": "Date",
        "start": "Début",
        "end": "Fin",
        "expected_participants": "Participants attendus",
        "save": "Enregistrer",
        "create": "Réserver",
        "back_to_calendar": "Retour au calendrier",
        "form_has_errors": "La réservation n'a pas été enregistrée : corrigez les champs signalés.",
        "err_required": "Ce champ est obligatoire.",
        "err_too_long": "Ce texte est trop long.",
        "err_invalid": "Valeur invalide.",
        "err_end_before_start": "La fin doit être après le début.",
        "err_too_long_meeting": "Une réservation dure 12 heures au plus.",
        "err_in_the_past": "Ce créneau est déjà passé.",
        "err_over_capacity": "La salle accueille {n} personnes au maximum.",
        "err_conflict": "La salle est déjà réservée sur ce créneau.",
        "err_conflict_with": "La salle est déjà réservée sur ce créneau : « {title} », {time}.",
        "err_finished": "Une réservation annulée ou terminée ne peut plus être modifiée.",
        "err_not_found": "Introuvable.",
        "err_csrf": "Le formulaire a expiré : rechargez la page et recommencez.",
        "booking": "Réservation",
        "when": "Quand",
        "created_by": "Réservée par",
        "status_booked": "Confirmée",
        "status_cancelled": "Annulée",
        "status_past": "Passée",
        "host_link": "Lien animateur",
        "host_link_hint": "Pour vous et les co-animateurs : ne le diffusez pas.",
        "participant_link": "Lien participants",
        "participant_link_hint": "À envoyer aux participants. Il ouvre 15 minutes avant le "
                                 "début.",
        "copy": "Copier",
        "open_link": "Ouvrir la page de réunion",
        "copied": "Copié !",
        "qr_caption": "Scannez pour rejoindre (lien participants)",
        "download_ics": "Ajouter à mon agenda (.ics)",
        "edit": "Modifier",
        "cancel_booking": "Annuler la réservation",
        "cancel_confirm_title": "Annuler cette réservation ?",
        "cancel_confirm_text": "Les liens de réunion ne fonctionneront plus. La réservation "
                               "reste visible dans l'historique.",
        "cancel_yes": "Oui, annuler la réservation",
        "cancel_no": "Non, garder la réservation",
        "cancelled_notice": "Cette réservation a été annulée.",
        "links_change_notice": "Si vous changez l'horaire, envoyez les nouveaux liens.",
        "created_notice": "Réservation enregistrée.",
        "updated_notice": "Réservation modifiée : envoyez les nouveaux liens.",
        "time_zone_note": "Heures de {zone}.",
        "not_found_title": "Page introuvable",
    },
    "en": {
        "app": "Visio — bookings",
        "dev_banner": "Development mode: rooms can be joined without a meeting link. "
                      "Do not expose this server.",
        "login_title": "Log in",
        "email": "E-mail address",
        "password": "Password",
        "log_in": "Log in",
        "log_out": "Log out",
        "login_failed": "Wrong e-mail address or password.",
        "switch_language": "Français",
        "rooms": "Rooms",
        "room": "Room",
        "people": "up to {n} people",
        "add_room": "Add a room",
        "room_name": "Room name",
        "max_participants": "Maximum participants",
        "no_rooms": "No rooms yet: add one below.",
        "week_of": "Week of {date}",
        "previous_week": "\u2039 Previous week",
        "next_week": "Next week \u203a",
        "this_week": "Today",
        "new_booking": "New booking",
        "book_at": "Book on {day} at {time}",
        "calendar_hint": "Tap a free slot to book it.",
        "title": "Title",
        "date": "Date",
        "start": "Start",
        "end": "End",
        "expected_participants": "Expected participants",
        "save": "Save",
        "create": "Book",
        "back_to_calendar": "Back to the calendar",
        "form_has_errors": "The booking was not saved: please fix the fields marked below.",
        "err_required": "This field is required.",
        "err_too_long": "This text is too long.",
        "err_invalid": "Invalid value.",
        "err_end_before_start": "The end must be after the start.",
        "err_too_long_meeting": "A booking lasts at most 12 hours.",
        "err_in_the_past": "This slot is already in the past.",
        "err_over_capacity": "The room holds at most {n} people.",
        "err_conflict": "The room is already booked at that time.",
        "err_conflict_with": "The room is already booked at that time: “{title}”, {time}.",
        "err_finished": "A cancelled or finished booking can no longer be changed.",
        "err_not_found": "Not found.",
        "err_csrf": "The form expired: reload the page and try again.",
        "booking": "Booking",
        "when": "When",
        "created_by": "Booked by",
        "status_booked": "Confirmed",
        "status_cancelled": "Cancelled",
        "status_past": "Past",
        "host_link": "Host link",
        "host_link_hint": "For you and co-hosts: do not share it.",
        "participant_link": "Participant link",
        "participant_link_hint": "Send it to the participants. It opens 15 minutes before "
                                 "the start.",
        "copy": "Copy",
        "open_link": "Open the meeting page",
        "copied": "Copied!",
        "qr_caption": "Scan to join (participant link)",
        "download_ics": "Add to my calendar (.ics)",
        "edit": "Edit",
        "cancel_booking": "Cancel the booking",
        "cancel_confirm_title": "Cancel this booking?",
        "cancel_confirm_text": "The meeting links will stop working. The booking stays "
                               "visible in the history.",
        "cancel_yes": "Yes, cancel the booking",
        "cancel_no": "No, keep the booking",
        "cancelled_notice": "This booking was cancelled.",
        "links_change_notice": "If you change the time, send the new links.",
        "created_notice": "Booking saved.",
        "updated_notice": "Booking changed: send the new links.",
        "time_zone_note": "Times in {zone}.",
        "not_found_title": "Page not found",
    },
}

_DAYS = {"fr": ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"],
         "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]}
_MONTHS = {"fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
                  "septembre", "octobre", "novembre", "décembre"],
           "en": ["January", "February", "March", "April", "May", "June", "July", "August",
                  "September", "October", "November", "December"]}


class Translator:
    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self._strings = STRINGS[self.language]

    def __call__(self, key: str, **values: object) -> str:
        text = self._strings.get(key) or STRINGS[DEFAULT_LANGUAGE].get(key) or key
        return text.format(**values) if values else text

    def day_name(self, day: date) -> str:
        return _DAYS[self.language][day.weekday()]

    def short_day(self, day: date) -> str:
        name = self.day_name(day)[:3]
        return f"{name}. {day.day}" if self.language == "fr" else f"{name} {day.day}"

    def long_date(self, day: date) -> str:
        month = _MONTHS[self.language][day.month - 1]
        return f"{self.day_name(day)} {day.day} {month} {day.year}"

    def time(self, moment: datetime) -> str:
        return f"{moment:%H:%M}"

    def span(self, start: datetime, end: datetime) -> str:
        """'lundi 3 mars 2031, 09:00 to 10:30' with an en dash (in the times' own zone)."""
        if start.date() == end.date():
            return f"{self.long_date(start.date())}, {self.range(start, end)}"
        return (f"{self.long_date(start.date())} {self.time(start)}{EN_DASH}"
                f"{self.long_date(end.date())} {self.time(end)}")

    def range(self, start: datetime, end: datetime) -> str:
        return f"{self.time(start)}{EN_DASH}{self.time(end)}"
